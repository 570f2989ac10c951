"""outage-radar detection maths: pure Python + River + numpy (no Kafka, no Faust)."""

__all__: list[str] = []
