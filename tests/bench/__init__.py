"""Benchmarks: scripts that print figures, run by hand (``python -m tests.bench.<name>``), not by pytest."""
