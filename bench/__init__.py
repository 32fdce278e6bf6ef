"""Benchmarks with their own runner (python -m bench.<name>); never part of the test suite. See bench/README.md."""
