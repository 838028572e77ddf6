"""Helpers for the weight feed tests: users with known tokens, an ASGI app on a real port, rpc rows."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from api.auth import hash_token
from api.queries import registry as reg
from core.settings import Settings
from pipeline.batch import columns
from pipeline.store import Store
from pipeline.transform import COLUMNS, Message, to_row
from svcpulse.services import free_port
from tests.integration.helpers import produce
from weigh.worker import Worker

# name -> (roles the user may hold, role held at start)
USERS = {
    "vic": (["viewer"], "viewer"),
    "olga": (["viewer", "operator"], "operator"),
    "otto": (["viewer", "operator"], "viewer"),
    "ada": (["viewer", "operator", "admin"], "admin"),
}


def token(name: str) -> str:
    return f"token-of-{name}"


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(name)}"}


def write_users(path: Path) -> Path:
    users = [{"name": n, "roles": roles, "role": role, "token_sha256": hash_token(token(n))}
             for n, (roles, role) in USERS.items()]
    path.write_text(json.dumps({"users": users}))
    return path


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI app under uvicorn in a thread on a free loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"uvicorn on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def rpc_event(service: str, instance: str, *, ok: bool = True, latency_ms: float = 5.0, version: str = "v1",
              ts_ms: int | None = None) -> dict[str, Any]:
    return {"v": 1, "ts_ms": ts_ms or int(time.time() * 1000), "caller": "test", "callee": service,
            "interface": "GET /x", "instance": instance, "side": "server", "latency_ms": latency_ms,
            "status": "ok" if ok else "error", "code": "200" if ok else "503", "version": version,
            "host": "test", "cgroup": ""}


@contextmanager
def weigh_worker(settings: Settings, store: Store | None = None, ready_within_s: float | None = 90) -> Iterator[Worker]:
    """A real weigh worker in a thread of the test process (what `svcpulse up` runs in-process).

    Yielded once it publishes its partitions (`ready_within_s`; None: at once, for a worker that may own
    none): the group join takes a few seconds on Tansu and over 15 s on a loaded CI machine, so a test's
    own deadlines start from a worker that is serving."""
    worker = Worker(settings, store)
    thread = threading.Thread(target=worker.run, name="weigh", daemon=True)
    thread.start()
    try:
        if ready_within_s is not None:
            assert worker.publishing.wait(ready_within_s), f"weigh worker not publishing after {ready_within_s} s"
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "weigh worker did not stop"


def send_rpc(bootstrap: str, events: Sequence[dict[str, Any]]) -> None:
    """rpc events to svcpulse.rpc, keyed by callee: what the weigh workers count."""
    produce(bootstrap, [("rpc", e) for e in events])


def insert_rpc(store: Store, events: Sequence[dict[str, Any]]) -> None:
    """Rows straight into rpc_calls (the loader path is covered by the end-to-end test)."""
    rows = [to_row("rpc", e, Message("svcpulse.rpc", 0, n, e["ts_ms"], None, b""))
            for n, e in enumerate(events)]
    store.insert("rpc_calls", COLUMNS["rpc"], columns(rows))


def register(store: Store, service: str, instances: Sequence[str]) -> None:
    """Registry rows as `PUT /v1/registry/services/{service}` writes them: telemetry alone routes nothing."""
    reg.register(store, service, instances, changed_by="test")
