"""The svcpulse weight feed inside the simulator: the real engine over every caller's calls.

Every `interval_s` (the API's SVCPULSE_WEIGHTS_INTERVAL_S, 2 s) the feed takes the calls that
ended in the engine's window (`window_s`, 10 s) up to `lag_s` ago (the pipeline: sink, Kafka,
loader, store; about a second), builds one `InstanceWindow` per registered instance exactly as
weights/inputs.py does, steps `weights.compute_weights`, and publishes what the API would: the
weights, states and mode, with a new key whenever the feed's revision changes (a long-poll wakes).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from balancer.client import FeedView
from weights import EngineConfig, EngineResult, EngineState, InstanceWindow, build_feed, compute_weights

EPOCH_MS = 1_700_000_000_000  # simulated time 0 as the engine's wall clock


@dataclass(frozen=True)
class _Ended:
    end_s: float
    instance: str
    ok: bool
    timed_out: bool
    latency_ms: float


class SimFeed:
    """A `WeightSource` for balancer.client.Balancer, fed by the simulator."""

    def __init__(self, instances: Sequence[str], config: EngineConfig | None = None,
                 interval_s: float = 2.0, lag_s: float = 1.0) -> None:
        self.instances = list(instances)
        self.config = config or EngineConfig()
        self.interval_s, self.lag_s = interval_s, lag_s
        self._calls: deque[_Ended] = deque()
        self._state = EngineState()
        self._revision = ""
        self._view = FeedView(dict.fromkeys(self.instances, 100), "", "normal", False, (0, False))
        self.results: list[tuple[float, EngineResult]] = []  # every cycle's result, for tests and plots

    def record(self, end_s: float, instance: str, ok: bool, timed_out: bool, latency_s: float) -> None:
        self._calls.append(_Ended(end_s, instance, ok, timed_out, latency_s * 1000))

    def cycle(self, now: float) -> None:
        upto = now - self.lag_s
        since = upto - self.config.window_s
        while self._calls and self._calls[0].end_s <= since:
            self._calls.popleft()
        in_window: dict[str, list[_Ended]] = {name: [] for name in self.instances}
        for call in self._calls:
            if call.end_s > upto:
                break
            in_window[call.instance].append(call)
        windows = [self._window(name, calls) for name, calls in in_window.items()]
        result = compute_weights(windows, self._state, EPOCH_MS + int(now * 1000), self.config)
        self._state = result.state
        self.results.append((now, result))
        revision = build_feed("sim", result)["revision"]
        if revision != self._revision:
            self._revision = revision
            self._view = FeedView(
                {i.instance: i.weight for i in result.instances}, revision, result.mode, False,
                (self._view.key[0] + 1, False), {i.instance: i.state for i in result.instances},
            )

    def current(self) -> FeedView:
        return self._view

    def _window(self, name: str, calls: list[_Ended]) -> InstanceWindow:
        if not calls:
            return InstanceWindow(name)
        latencies = sorted(c.latency_ms for c in calls)
        n = len(latencies)
        timeouts = sum(c.timed_out for c in calls)
        return InstanceWindow(
            name, requests=n, errors=sum(not c.ok for c in calls) - timeouts, timeouts=timeouts,
            latency_ms_p50=latencies[int(0.5 * (n - 1))], latency_ms_p99=latencies[int(0.99 * (n - 1))],
            rps=n / self.config.window_s,
        )
