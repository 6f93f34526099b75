"""Benchmark cases, candidate runs, judges and pricing."""
