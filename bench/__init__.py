"""Benchmarks for ipgeo (run from the repository root, never part of ``make test``)."""
