"""outage-radar detection maths: pure Python + River + numpy (no Kafka, no Faust)."""

from detectors.counts import CountEvidence, SeasonalCount, SilenceDetector
from detectors.engine import Anomaly, DetectionEngine, EngineWindow, Segment, Signal
from detectors.incidents import Incident, IncidentManager, IncidentUpdate
from detectors.invariants import InvariantBurst, InvariantEvidence
from detectors.latency import LatencyEvidence, LatencyShift
from detectors.lifecycle import IncidentLifecycle, Transition
from detectors.pipeline import OfflinePipeline
from detectors.rates import RateEvidence, SuccessRateDrop
from detectors.series import KpiScorer
from detectors.windows import AssembledWindow, PartitionWindows, WindowAssembler

__all__ = [
    "Anomaly",
    "AssembledWindow",
    "CountEvidence",
    "DetectionEngine",
    "EngineWindow",
    "Incident",
    "IncidentLifecycle",
    "IncidentManager",
    "IncidentUpdate",
    "InvariantBurst",
    "InvariantEvidence",
    "KpiScorer",
    "LatencyEvidence",
    "LatencyShift",
    "OfflinePipeline",
    "PartitionWindows",
    "RateEvidence",
    "SeasonalCount",
    "Segment",
    "Signal",
    "SilenceDetector",
    "SuccessRateDrop",
    "Transition",
    "WindowAssembler",
]
