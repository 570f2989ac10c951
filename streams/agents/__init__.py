"""Faust agents, one module each. Importing this package registers them on the app."""

from streams.agents import detection, ingest, watch

__all__ = ["detection", "ingest", "watch"]
