"""outage-radar stream wiring: the Faust app, topics, agents and commands."""

__all__: list[str] = []
