"""Prometheus metrics of the pipeline, and the loader's small HTTP endpoint (/metrics, /readyz, /healthz).

The API serves the same registry at its /metrics; `svcpulse load --metrics-port` serves it here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

ROWS = Counter("svcpulse_loader_rows", "Rows inserted into ClickHouse", ["table"])
BATCHES = Counter("svcpulse_loader_batches", "Batches inserted and committed")
DEAD_LETTERS = Counter("svcpulse_loader_dead_letters", "Messages sent to the dead-letter topic", ["topic"])
DUPLICATES = Counter("svcpulse_loader_redelivered_skipped", "Redelivered rows skipped (already inserted)")
INSERT_FAILURES = Counter("svcpulse_loader_insert_failures", "Failed insert attempts (retried)")
INSERT_SECONDS = Histogram("svcpulse_loader_insert_seconds", "Time to insert one batch",
                           buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
ROWS_PER_SECOND = Gauge("svcpulse_loader_rows_per_second", "Rows inserted per second, last interval")
LAG = Gauge("svcpulse_loader_consumer_lag", "Messages in Kafka not yet taken by the loader",
            ["topic", "partition"])
OFFSET_GAPS = Counter("svcpulse_loader_offset_gaps", "Holes in a partition's offsets: refetched (the client "
                      "skipped records; fetched again) or confirmed (the broker has none there)", ["outcome"])
PAUSED = Gauge("svcpulse_loader_paused", "1 while the loader waits for the store to recover")


class _Handler(BaseHTTPRequestHandler):
    readiness: Callable[[], str] = staticmethod(lambda: "ok")

    def do_GET(self) -> None:
        if self.path == "/metrics":
            self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
        elif self.path in ("/readyz", "/healthz"):
            state = self.readiness() if self.path == "/readyz" else "ok"
            ready = state == "ok"
            body = {"status": "ready" if ready else "not ready", "loader": state} if self.path == "/readyz" else {
                "status": "ok"}
            self._send(200 if ready else 503, json.dumps(body).encode(), "application/json")
        else:
            self._send(404, b'{"detail": "not found: /metrics, /readyz, /healthz"}', "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # scrapes every few seconds: no log line each
        return


def serve(host: str, port: int, readiness: Callable[[], str]) -> ThreadingHTTPServer:
    """Serve /metrics, /readyz (200 when readiness() is "ok", else 503 with the reason) and /healthz
    in a daemon thread; returns the server (shutdown() stops it)."""
    handler = type("LoaderHandler", (_Handler,), {"readiness": staticmethod(readiness)})
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="loader-metrics", daemon=True).start()
    return server
