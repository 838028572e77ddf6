"""A reference, not a peer: round robin that knows the fault, over the fault-free instances from its
first instant. What any policy that moved every call off the faulty instances at once would get;
its p99 shows the price of the other instances taking over the work (they run busier)."""

from __future__ import annotations

from bench.policies.base import Context, Result


class Oracle:
    name = "oracle"

    def __init__(self, ctx: Context) -> None:
        faulty = ctx.extra.get("faulty", frozenset())
        self._fault_at = float(ctx.extra.get("fault_at", 0.0))  # type: ignore[arg-type]
        self._all = list(ctx.instances)
        self._fine = [i for i in ctx.instances if i not in faulty] or self._all  # type: ignore[operator]
        self._next = ctx.rng.randrange(len(self._all))

    def pick(self, now: float, interface: str) -> str:
        order = self._fine if now >= self._fault_at else self._all
        self._next += 1
        return order[self._next % len(order)]

    def done(self, instance: str, now: float, result: Result) -> None:
        pass

    def connection_lost(self, instance: str, now: float) -> None:
        pass

    def out(self, now: float) -> frozenset[str]:
        return frozenset()
