"""create_app(): builds the FastAPI app; the lifespan opens the store (or uses one handed in)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import pipeline.metrics  # noqa: F401  (registers the loader's metrics so /metrics always lists them)
from api import hardening
from api.alarms.service import AlarmService
from api.auth import Directory, load_users
from api.queries.registry import held_roles
from api.routes import (
    alarms,
    audit,
    capacity,
    connections,
    console,
    discovery,
    health,
    overrides,
    registry,
    releases,
    series,
    services,
    users,
    weights,
)
from api.users_file import watch_users
from api.weights.service import WeightService
from core.settings import Settings
from pipeline.store import CONTROL_LANE, QueryLimitError, QueryLimits, Store, StoreError, open_store
from pipeline.store.lanes import CONTROL_PRIORITY, READ_PRIORITY, Lane

DESCRIPTION = """svcpulse turns what services see of each other (eBPF TCP lifetimes, RPC calls, load)
into routing weights, queries, capacity estimates and alarms."""


def _directory(settings: Settings, store: Store) -> Directory:
    users = load_users(settings.users_file)
    try:
        return Directory(users, held_roles(store) if users else {})
    except StoreError:
        return Directory(users)  # store down at start: file roles until an admin assigns again


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """The API app. Pass `store` to share one already open (the embedded run does); it is not closed."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        base = store or open_store(settings.store_url)
        # Query scans, small reads/writes and the weight loop use the store on separate lanes, with limits
        # ClickHouse enforces (pipeline/store/lanes.py).
        reads = QueryLimits(settings.query_timeout_s, settings.query_max_memory_bytes, READ_PRIORITY)
        app.state.query_store = Lane(base, "query", reads)
        app.state.store = Lane(base, "read", reads)
        app.state.directory = _directory(settings, app.state.store)
        control = Lane(base, CONTROL_LANE, QueryLimits(settings.control_query_timeout_s, priority=CONTROL_PRIORITY))
        app.state.weights = WeightService(control, settings)
        app.state.alarms = AlarmService(app.state.store, settings)
        loop_task = asyncio.create_task(app.state.weights.run(), name="weights")
        alarm_task = asyncio.create_task(app.state.alarms.run(), name="alarms")
        users_task = asyncio.create_task(watch_users(app.state, settings.users_file, settings.users_reload_s),
                                         name="users") if settings.users_file and settings.users_reload_s else None
        try:
            yield
        finally:
            if users_task is not None:
                users_task.cancel()
            app.state.weights.stop()
            app.state.alarms.stop()
            # let a cycle in its thread finish with the store
            await asyncio.wait_for(asyncio.gather(loop_task, alarm_task), timeout=60)
            if store is None:
                base.close()

    app = FastAPI(title="svcpulse", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    for module in (health, weights, registry, discovery, overrides, releases, users, audit,
                   services, series, connections, capacity, alarms, console):
        app.include_router(module.router)
    hardening.install(app, settings)

    @app.exception_handler(QueryLimitError)
    async def query_too_big(request: Request, exc: QueryLimitError) -> JSONResponse:
        # Memory use depends on the request alone: change it (422). Time also depends on load: 503.
        return JSONResponse({"detail": str(exc)}, status_code=422 if exc.kind == "memory" else 503)

    @app.exception_handler(StoreError)
    async def store_unavailable(request: Request, exc: StoreError) -> JSONResponse:
        # The store being down is an outage, not a bug: say so without a stack trace.
        return JSONResponse({"detail": f"store unavailable: {exc}"}, status_code=503)

    return app
