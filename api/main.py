"""create_app(): builds the FastAPI app; the lifespan opens the store (or uses one handed in)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import pipeline.metrics  # noqa: F401  (registers the loader's metrics so /metrics always lists them)
from api.routes import health
from pipeline.store import Store, StoreError, open_store
from svcpulse.settings import Settings

DESCRIPTION = """svcpulse turns what services see of each other (eBPF TCP lifetimes, RPC calls, load)
into routing weights, queries, capacity estimates and alarms."""


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """The API app. Pass `store` to share one already open (the embedded run does); it is not closed."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.store = store or open_store(settings.store_url)
        try:
            yield
        finally:
            if store is None:
                app.state.store.close()

    app = FastAPI(title="svcpulse", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.include_router(health.router)

    @app.exception_handler(StoreError)
    async def store_unavailable(request: Request, exc: StoreError) -> JSONResponse:
        # The store being down is an outage, not a bug: say so without a stack trace.
        return JSONResponse({"detail": f"store unavailable: {exc}"}, status_code=503)

    return app
