"""Routing weights from recent call data: a pure engine plus the feed document (docs/weights.md)."""

from weights.engine import compute_weights
from weights.feed import apply_canary, build_feed, canary_weights, feed_revision
from weights.model import (
    DEFAULT_CONFIG,
    STATIC_WEIGHT,
    EngineConfig,
    EngineResult,
    EngineState,
    InstanceResult,
    InstanceState,
    InstanceWindow,
    Mode,
    Override,
    State,
)

__all__ = [
    "DEFAULT_CONFIG",
    "STATIC_WEIGHT",
    "EngineConfig",
    "EngineResult",
    "EngineState",
    "InstanceResult",
    "InstanceState",
    "InstanceWindow",
    "Mode",
    "Override",
    "State",
    "apply_canary",
    "build_feed",
    "canary_weights",
    "compute_weights",
    "feed_revision",
]
