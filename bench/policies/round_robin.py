"""Plain round robin: the baseline nobody who cares about routing runs (issue 16), kept for scale."""

from __future__ import annotations

from bench.policies.base import Context, Result


class RoundRobin:
    """Each caller walks the instance list in order, starting at a random place; it learns nothing."""

    name = "round robin"

    def __init__(self, ctx: Context) -> None:
        self._order = list(ctx.instances)
        self._next = ctx.rng.randrange(len(self._order))

    def pick(self, now: float, interface: str) -> str:
        instance = self._order[self._next]
        self._next = (self._next + 1) % len(self._order)
        return instance

    def done(self, instance: str, now: float, result: Result) -> None:
        pass

    def connection_lost(self, instance: str, now: float) -> None:
        pass

    def out(self, now: float) -> frozenset[str]:
        return frozenset()
