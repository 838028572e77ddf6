"""The one shape every load-balancer integration takes: render, apply, verify (docs/balancer.md).

An adapter turns a feed (balancer.client.FeedView) into the text of what its balancer should hold
(`render`, pure), makes the balancer hold it (`apply`), and says whether it still does (`verify`).
The shared loop (balancer/loop.py) owns everything else: following the feed, skipping renders that
did not change, rate limits, backoff, keeping the last good state, --dry-run and /metrics.

The rendered text is canonical (same feed, same text), so the loop can compare renders to skip
no-op applies and print a unified diff in --dry-run.
"""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar

from balancer.client import FeedView


class BalancerError(RuntimeError):
    """The balancer refused a change or is unreachable; the message says which and where to look."""


class RenderError(ValueError):
    """The feed cannot be expressed for this balancer; the last applied state stays."""


class Adapter(ABC):
    kind: ClassVar[str]  # the CLI name: haproxy, nginx, caddy, envoy-eds
    default_min_interval_s: ClassVar[float] = 0.0  # nginx raises it: every apply is a reload

    @abstractmethod
    def target(self) -> str:
        """Where this adapter writes, for log lines ("backend app via /run/haproxy/admin.sock")."""

    @abstractmethod
    def render(self, view: FeedView) -> str:
        """The balancer's target state as canonical text; raises RenderError."""

    @abstractmethod
    def apply(self, rendered: str) -> None:
        """Make the balancer hold `rendered`; raises BalancerError and leaves the last good state."""

    @abstractmethod
    def verify(self, rendered: str) -> str:
        """"" when the balancer holds `rendered` now, else what differs (the loop re-applies)."""


def routable_weights(view: FeedView) -> dict[str, int]:
    """Weights of the instances that may take traffic in normal operation: weight > 0 and neither
    ejected nor drained. Raises RenderError when none is left: a balancer with no server fails every
    request, and a feed saying so is far likelier a mistake than an intent, so the last state stays."""
    weights = {name: w for name, w in view.weights.items()
               if w > 0 and view.states.get(name) not in ("ejected", "drained")}
    if not weights:
        raise RenderError(f"revision {view.revision} routes nothing (every instance has weight 0 or is ejected "
                          "or drained); keeping the last applied state")
    return weights


def scale_down(weights: Mapping[str, int], ceiling: int) -> dict[str, int]:
    """Weights on a balancer's 0..ceiling scale: scaled down together only when one exceeds it (a gray
    release can publish weights in the thousands); a positive weight stays >= 1."""
    top = max(weights.values(), default=0)
    if top <= ceiling:
        return dict(weights)
    return {k: max(1, round(w * ceiling / top)) if w > 0 else 0 for k, w in weights.items()}


def split_address(instance: str) -> tuple[str, int]:
    """("10.0.0.7", 8080) from "10.0.0.7:8080", ("::1", 80) from "[::1]:80"; ValueError otherwise."""
    host, sep, port = instance.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ValueError(f"instance {instance!r} is not host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
