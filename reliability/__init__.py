"""Fault scenarios for Corridor: faults injected on real servers, outcomes in figures.

Run them all with ``python -m reliability`` (``--quick`` for the CI subset); the
figures go to RELIABILITY.md.
"""
