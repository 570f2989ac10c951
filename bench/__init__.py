"""Benchmarks of outage-radar (``make bench``)."""
