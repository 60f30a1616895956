"""Benchmarks run as scripts (``scripts/bench``), not as tests."""
