"""Committed journey histories replayed by ``tests/test_replay.py``."""
