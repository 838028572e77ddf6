"""create_app(): builds the FastAPI app; the lifespan opens the store (or uses one handed in).

The app serves; it computes no weights. Its lifespan starts the feed reader (api/weights/service.py),
the lease candidacy (weigh/lease.py), and two loops that act only while this replica holds the
lease: alarms (api/alarms/service.py) and the recording of the workers' intents (api/leader.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api import hardening
from api.alarms.service import AlarmService
from api.auth import Directory, RoleRefused, load_users
from api.control import ControlPublisher, ControlUnavailable, MirroringStore
from api.leader import Leader
from api.metrics import api_registry
from api.queries.registry import held_roles
from api.routes import (
    alarms,
    audit,
    capacity,
    connection_health,
    connections,
    console,
    discovery,
    health,
    overrides,
    registry,
    releases,
    series,
    service_map,
    services,
    users,
    weights,
    xds,
)
from api.users_file import watch_users
from api.weights.service import WeightService
from core.settings import Settings
from pipeline.store import QueryLimitError, QueryLimits, Store, StoreError, open_store
from pipeline.store.lanes import READ_PRIORITY, Lane, control_lane
from weigh.lease import Lease

DESCRIPTION = """svcpulse turns what services see of each other (eBPF TCP lifetimes, RPC calls, load)
into routing weights, queries, capacity estimates and alarms."""


def _directory(settings: Settings, store: Store) -> Directory:
    users = load_users(settings.users_file)
    try:
        return Directory(users, held_roles(store) if users else {})
    except StoreError:
        return Directory(users)  # store down at start: file roles until svcpulse.control delivers them


def _apply_roles(app: FastAPI, held: dict[str, str]) -> None:
    """Held roles as svcpulse.control says (an admin's change on any replica), within the users file."""
    directory: Directory = app.state.directory
    for name, role in held.items():
        # The users file no longer allows it (or no longer lists the user): the file wins.
        with contextlib.suppress(KeyError, RoleRefused):
            directory.assign(name, role)


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """The API app. Pass `store` to share one already open (the embedded run does); it is not closed."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        base = store or open_store(settings.store_url)
        # Query scans, small reads/writes and the control plane's own statements use the store on separate
        # lanes, with limits ClickHouse enforces (pipeline/store/lanes.py).
        reads = QueryLimits(settings.query_timeout_s, settings.query_max_memory_bytes, READ_PRIORITY)
        control = control_lane(base, settings.control_query_timeout_s)
        publisher = ControlPublisher(settings.kafka_client, settings.kafka_bootstrap)
        app.state.query_store = Lane(base, "query", reads)
        app.state.store = MirroringStore(Lane(base, "read", reads), publisher)
        app.state.directory = _directory(settings, app.state.store)
        app.state.lease = Lease(settings.kafka_client, settings.kafka_bootstrap, settings.lease_group_id,
                                f"api-{socket.gethostname()}:{os.getpid()}:{id(app)}").start()
        app.state.weights = WeightService(settings, control, publisher, lambda held: _apply_roles(app, held))
        app.state.alarms = AlarmService(app.state.store, settings, app.state.lease)
        leader = Leader(MirroringStore(control, publisher), app.state.weights, app.state.lease)
        tasks = [asyncio.create_task(app.state.weights.run(), name="weights"),
                 asyncio.create_task(app.state.alarms.run(), name="alarms"),
                 asyncio.create_task(leader.run(), name="leader")]
        users_task = asyncio.create_task(watch_users(app.state, settings.users_file, settings.users_reload_s),
                                         name="users") if settings.users_file and settings.users_reload_s else None
        # Start-up leaves ~150,000 long-lived objects (chdb, pyarrow, FastAPI's models) that each full
        # collection walks again: pauses up to ~220 ms, the map's slowest requests (docs/api.md). Frozen,
        # they are skipped (full collections then took at most 8 ms).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # they are collectable again once the app is gone (tests build many apps)
            if users_task is not None:
                users_task.cancel()
            app.state.weights.stop()
            app.state.alarms.stop()
            leader.stop()
            # let a pass in its thread finish with the store
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
            await asyncio.to_thread(app.state.lease.stop)
            publisher.close()
            if store is None:
                base.close()

    app = FastAPI(title="svcpulse", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.metrics = api_registry(app.state)
    for module in (health, weights, registry, discovery, overrides, releases, users, audit,
                   services, connection_health, series, connections, service_map, capacity, alarms,
                   console):
        app.include_router(module.router)
    app.include_router(xds.router)  # Envoy EDS, REST xDS v3 (docs/envoy.md)
    hardening.install(app, settings)

    @app.exception_handler(QueryLimitError)
    async def query_too_big(request: Request, exc: QueryLimitError) -> JSONResponse:
        # Memory use depends on the request alone: change it (422). Time also depends on load: 503.
        return JSONResponse({"detail": str(exc)}, status_code=422 if exc.kind == "memory" else 503)

    @app.exception_handler(StoreError)
    async def store_unavailable(request: Request, exc: StoreError) -> JSONResponse:
        # The store being down is an outage, not a bug: say so without a stack trace.
        return JSONResponse({"detail": f"store unavailable: {exc}"}, status_code=503)

    @app.exception_handler(ControlUnavailable)
    async def control_unavailable(request: Request, exc: ControlUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    return app
