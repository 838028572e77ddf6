"""Liveness, readiness and Prometheus metrics.

/readyz tells anonymous callers only ready or not: the detail (store and broker addresses, driver
errors) is for authenticated users, so a probe from outside learns nothing about the internals.
"""

from __future__ import annotations

import socket

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from api.auth import bearer_token
from api.deps import SettingsDep, StoreDep
from pipeline.progress import loader_verdict
from pipeline.store import StoreError

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    store: str | None = None  # the detail: shown to authenticated callers only
    broker: str | None = None
    loader: str | None = None  # "ok", or why loading counts as stalled (pipeline/progress.py)


def broker_reachable(bootstrap: str, timeout_s: float = 1.0) -> str:
    """"ok" if any bootstrap server accepts a TCP connection, else why not."""
    errors = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
                return "ok"
        except (OSError, ValueError) as err:
            errors.append(f"{server}: {err}")
    return "; ".join(errors) or "no bootstrap servers configured"


@router.get("/healthz", response_model=Health, summary="The process is alive")
def healthz() -> Health:
    return Health(status="ok")


def authenticated(request: Request) -> bool:
    """Whether the request carries a valid token of any user (the detail of /readyz is theirs)."""
    token = bearer_token(request.headers.get("authorization", ""))
    return token is not None and request.app.state.directory.authenticate(token) is not None


@router.get("/readyz", response_model=Readiness, response_model_exclude_none=True,
            summary="The store and the Kafka broker are reachable and loading is not stalled (detail with a token)",
            responses={503: {"model": Readiness, "description": "a dependency is unreachable"}})
def readyz(request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    try:
        store.ping()
        store_state = "ok"
    except StoreError as err:
        store_state = str(err)
    broker_state = broker_reachable(settings.kafka_bootstrap)
    loader_state = loader_verdict(settings.kafka_client, settings.kafka_bootstrap, settings.group_id,
                                  settings.loader_stall_s) if broker_state == "ok" else "ok"
    ready = store_state == "ok" and broker_state == "ok" and loader_state == "ok"
    body = Readiness(status="ready" if ready else "not ready", store=store_state, broker=broker_state,
                     loader=loader_state)
    if not authenticated(request):
        body = Readiness(status=body.status)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics of this API replica (feed freshness, lease, process)",
            response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def prometheus_metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
