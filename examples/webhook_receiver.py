#!/usr/bin/env python3
"""A minimal receiver for ``python -m streams webhook``: verifies, de-duplicates, prints.

Standard library only. Each request's body is a PagerDuty Events v2 body; with a shared secret
the sink signs it (``X-Radar-Timestamp``, ``X-Radar-Signature``), and :func:`verify` below is
the verification recipe to copy. Delivery is at-least-once, so the same event can arrive twice:
``X-Radar-Event-Id`` is stable per event, and a receiver drops ids it has already handled.

    WEBHOOK_SECRET=... python examples/webhook_receiver.py --port 8080
    RADAR_WEBHOOK_URL=http://127.0.0.1:8080/ RADAR_WEBHOOK_SECRET=... python -m streams webhook
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import time
from collections import OrderedDict
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def verify(secret: str, headers: Mapping[str, str], body: bytes, max_age_s: int = 300) -> bool:
    timestamp = headers.get("X-Radar-Timestamp", "")
    signature = headers.get("X-Radar-Signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > max_age_s:
        return False  # unsigned, or too old / too new: a replayed request
    signed = timestamp.encode() + b"." + body  # the raw body, before any JSON parsing
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest("sha256=" + digest, signature)


class SeenIds:
    """The last ``size`` event ids handled (drop redeliveries and replays)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self.ids: OrderedDict[str, None] = OrderedDict()

    def add(self, event_id: str) -> bool:
        """``False`` when ``event_id`` was seen before."""
        if event_id in self.ids:
            return False
        self.ids[event_id] = None
        if len(self.ids) > self.size:
            self.ids.popitem(last=False)
        return True


def make_handler(secret: str, seen: SeenIds) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if secret and not verify(secret, self.headers, body):
                self.send_response(401)  # a 4xx: the sink reports it and does not retry
                self.end_headers()
                return
            event_id = self.headers.get("X-Radar-Event-Id", "")
            if seen.add(event_id):
                event = json.loads(body)
                payload = event["payload"]
                print(
                    f"{event['event_action']:<8} {payload['severity']:<8} "
                    f"{event['dedup_key']} {payload['summary']}",
                    flush=True,
                )
            self.send_response(202)  # a 2xx, also for a duplicate: it was delivered
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep stdout for the events

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="port to listen on")
    args = parser.parse_args()
    secret = os.environ.get("WEBHOOK_SECRET", "")
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(secret, SeenIds()))
    print(f"listening on http://127.0.0.1:{args.port}/ ({'verifying' if secret else 'unsigned'})")
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C stops it
        server.serve_forever()


if __name__ == "__main__":
    main()
