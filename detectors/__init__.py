"""outage-radar detection maths: pure Python + River + numpy (no Kafka, no Faust)."""

from detectors.lifecycle import IncidentLifecycle, Transition
from detectors.monitor import IncidentChange, Segment, TransactionMonitor
from detectors.rates import RateEvidence, SuccessRateDrop
from detectors.windows import AssembledWindow, PartitionWindows, WindowAssembler

__all__ = [
    "AssembledWindow",
    "IncidentChange",
    "IncidentLifecycle",
    "PartitionWindows",
    "RateEvidence",
    "Segment",
    "SuccessRateDrop",
    "TransactionMonitor",
    "Transition",
    "WindowAssembler",
]
