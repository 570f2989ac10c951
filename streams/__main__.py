"""``python -m streams``: the Faust command line (worker and our commands)."""

from __future__ import annotations

import sys


def check_web_port(port: int, host: str = "0.0.0.0") -> None:
    """Raise :class:`~streams.errors.RadarError` if ``host:port``, where Faust binds its web
    server, is taken. Faust binds it even with the web server off, and a taken port stopped the
    worker after it had joined its group, with a bare ``OSError`` traceback.

    Bound the way the web server binds (``SO_REUSEADDR``: a port a stopped worker left in
    ``TIME_WAIT`` is free), then released.
    """
    import socket

    from streams.errors import RadarError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise RadarError(
                f"RADAR_WEB_PORT={port} cannot be bound on {host} ({exc.strerror}): another "
                "worker on this machine? Each worker needs its own port, even with "
                f"RADAR_WEB_ENABLED=false; set RADAR_WEB_PORT to a free one, e.g. {port + 1}"
            ) from exc


def prepare_worker() -> None:
    """Before ``worker`` starts: check its web port is free, and create missing topics
    (auto-creation gets counts wrong).

    Topics are not created with ``RADAR_CREATE_TOPICS=false`` (e.g. when a deployment step
    made them).
    """
    from streams.app import configure_for_broker, settings
    from streams.broker import create_topics
    from streams.errors import BrokerError

    check_web_port(settings.web_port)
    flavour = configure_for_broker()
    print(f"broker {settings.broker}: {flavour}", file=sys.stderr)
    if settings.warm_start:
        warm_start_worker(settings.warm_start)
    if not settings.create_topics:
        return
    try:
        made = create_topics(
            settings.bootstrap_servers,
            settings.topics.all().values(),
            partitions=settings.partitions,
            replication=settings.replication,
            topic_configs=settings.topics.configs(),
        )
    except Exception as exc:  # kafka-python's errors, translated at this boundary
        raise BrokerError(
            f"cannot create topics on RADAR_BROKER={settings.broker} ({exc}); is the broker "
            "running? Start one with `python -m streams broker`, or point RADAR_BROKER at yours"
        ) from exc
    if made:
        print(f"created topics: {', '.join(made)}", file=sys.stderr)


def warm_start_worker(history: str) -> None:
    """``RADAR_WARM_START``: pre-train the detection agent's detectors on traffic files, before
    Faust starts (the windows topic, restored next, then continues from there)."""
    from pathlib import Path

    from streams.agents import detection
    from streams.app import settings
    from streams.evaluate import learn_history

    print(f"warm start: reading {history} ...", file=sys.stderr)
    learned = learn_history(Path(history), detection.engine, detection.manager,
                            settings.lateness_ms)  # fmt: skip
    print(f"{learned.line()} in {learned.stats.seconds:.1f} s", file=sys.stderr)


def main() -> None:
    from streams.errors import RadarError

    try:
        from streams import commands  # noqa: F401  (registers the agents and commands)
        from streams.app import app

        if "worker" in sys.argv[1:2]:
            prepare_worker()
    except RadarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    app.main()


if __name__ == "__main__":
    main()
