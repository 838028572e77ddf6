"""Reusable dependencies: the store (two lanes), settings, weight and alarm services the app's lifespan opened."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.alarms.service import AlarmService
from api.weights.service import WeightService
from core.settings import Settings
from pipeline.store import Store


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_query_store(request: Request) -> Store:
    """The store for the query API's scans (series, top-N, connections, capacity): a lane of its own, so
    heavy reads never take the connections of the registry, overrides or the weight loop."""
    return request.app.state.query_store


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_weights(request: Request) -> WeightService:
    return request.app.state.weights


def get_alarms(request: Request) -> AlarmService:
    return request.app.state.alarms


StoreDep = Annotated[Store, Depends(get_store)]
QueryStoreDep = Annotated[Store, Depends(get_query_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
WeightsDep = Annotated[WeightService, Depends(get_weights)]
AlarmsDep = Annotated[AlarmService, Depends(get_alarms)]
