"""Benchmarks of Corridor against baselines measured in the same run (`make bench`)."""
