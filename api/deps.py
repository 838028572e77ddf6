"""Reusable dependencies: the store, settings and weight service the app's lifespan opened."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.weights.service import WeightService
from pipeline.store import Store
from svcpulse.settings import Settings


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_weights(request: Request) -> WeightService:
    return request.app.state.weights


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
WeightsDep = Annotated[WeightService, Depends(get_weights)]
