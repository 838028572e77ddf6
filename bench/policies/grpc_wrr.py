"""gRPC weighted_round_robin (gRFC A58), as grpc-go implements it (balancer/weightedroundrobin).

- weight = qps / (utilization + eps/qps x error_utilization_penalty), from each backend's own ORCA
  load report on every response (per-call reporting, the default); a report with qps or
  utilization 0 is ignored (endpointWeight.OnLoadReport);
- a weight is used only after `blackout_period` of reports (new or returning endpoints) and
  not once `weight_expiration_period` has passed without one; unusable weights count as the
  mean of the usable ones, and with fewer than two usable weights it is plain round robin
  (picker.newScheduler);
- the scheduler is rebuilt every `weight_update_period` (the picker's ticker); picking is the
  static-stride EDF of scheduler.go (weights scaled so the largest is 65535);
- only READY endpoints are picked: a lost or refused connection takes the endpoint out until a
  reconnect succeeds, retried with gRPC's connection backoff (1 s, x1.6, jitter 0.2, max 120 s,
  doc/connection-backoff.md); back in READY, the blackout applies again.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.policies.base import Context, LoadReport, Result, Timer

MAX_WEIGHT = 65535  # scheduler.go: maxWeight = math.MaxUint16


@dataclass(frozen=True)
class WrrConfig:
    """lbConfig defaults "as documented in A58" (bb.ParseConfig in balancer.go)."""

    blackout_s: float = 10.0  # BlackoutPeriod: 10 * time.Second
    expiration_s: float = 180.0  # WeightExpirationPeriod: 3 * time.Minute
    update_period_s: float = 1.0  # WeightUpdatePeriod: time.Second
    error_utilization_penalty: float = 1.0  # ErrorUtilizationPenalty: 1
    backoff_initial_s: float = 1.0  # connection-backoff.md INITIAL_BACKOFF
    backoff_multiplier: float = 1.6  # MULTIPLIER
    backoff_jitter: float = 0.2  # JITTER
    backoff_max_s: float = 120.0  # MAX_BACKOFF


class EndpointWeight:
    """endpointWeight: the last computed weight and the two timestamps that gate its use."""

    def __init__(self) -> None:
        self.value = 0.0
        self.non_empty_since: float | None = None
        self.last_updated: float | None = None

    def on_report(self, load: LoadReport, now: float, penalty: float) -> None:
        if load.utilization == 0 or load.qps == 0:
            return
        self.value = load.qps / (load.utilization + load.eps / load.qps * penalty)
        self.last_updated = now
        if self.non_empty_since is None:
            self.non_empty_since = now

    def weight(self, now: float, config: WrrConfig) -> float:
        if self.last_updated is None:
            return 0.0
        if now - self.last_updated >= config.expiration_s:
            self.non_empty_since = None
            return 0.0
        if config.blackout_s and (self.non_empty_since is None or now - self.non_empty_since < config.blackout_s):
            return 0.0
        return self.value


def scheduler_weights(weights: list[float]) -> list[int] | None:
    """newScheduler: None means round robin; else weights scaled to MAX_WEIGHT, zeros at the mean."""
    n = len(weights)
    zeros = sum(1 for w in weights if w == 0)
    if n <= 1 or zeros >= n - 1:
        return None
    scale = MAX_WEIGHT / max(weights)
    mean = round(scale * sum(weights) / (n - zeros))
    scaled = [mean if w == 0 else round(scale * w) for w in weights]
    return None if all(w == mean for w in scaled) else scaled


def stride_pick(weights: list[int], sequence: int) -> tuple[int, int]:
    """edfScheduler.nextIndex: (index, next sequence). A backend is picked `weight` times per
    MAX_WEIGHT generations; the offset spreads the skips of equal neighbours."""
    offset = MAX_WEIGHT // 2
    n = len(weights)
    while True:
        index, generation = sequence % n, sequence // n
        sequence += 1
        weight = weights[index]
        if (weight * generation + index * offset) % MAX_WEIGHT >= MAX_WEIGHT - weight:
            return index, sequence


class GrpcWrr:
    name = "grpc wrr"

    def __init__(self, ctx: Context, config: WrrConfig | None = None) -> None:
        self.config = config or WrrConfig()
        self._rng = ctx.rng
        self._instances = list(ctx.instances)
        self._weights = {i: EndpointWeight() for i in self._instances}
        self._ready = list(self._instances)
        self._reconnect: dict[str, tuple[float, float]] = {}  # instance -> (retry at, current backoff)
        self._reachable = ctx.extra.get("reachable")  # (instance, now) -> bool: can a connection be made
        self._sequence = ctx.rng.getrandbits(32)  # p.idx starts random, so callers are not in step
        self._schedule: list[int] | None = None
        self._updates = Timer(self.config.update_period_s, ctx.started_s)

    def pick(self, now: float, interface: str) -> str:
        self._advance(now)
        if not self._ready:  # nothing READY: the call fails as gRPC's would; count it on the first
            return self._instances[0]
        if self._schedule is None:
            self._sequence += 1
            return self._ready[self._sequence % len(self._ready)]
        index, self._sequence = stride_pick(self._schedule, self._sequence)
        return self._ready[index]

    def done(self, instance: str, now: float, result: Result) -> None:
        if not result.reached:
            self.connection_lost(instance, now)
        elif result.load is not None:
            self._weights[instance].on_report(result.load, now, self.config.error_utilization_penalty)

    def connection_lost(self, instance: str, now: float) -> None:
        if instance in self._ready:
            self._ready.remove(instance)
            initial = self.config.backoff_initial_s
            self._reconnect[instance] = (now + self._jittered(initial), initial)
            self._rebuild(now)

    def out(self, now: float) -> frozenset[str]:
        self._advance(now)
        return frozenset(self._reconnect)

    def _advance(self, now: float) -> None:
        for instance, (retry_at, backoff) in list(self._reconnect.items()):
            if now < retry_at:
                continue
            if self._reachable is None or self._reachable(instance, retry_at):
                del self._reconnect[instance]
                self._ready = [i for i in self._instances if i not in self._reconnect]
                self._weights[instance].non_empty_since = None  # OnSubchannelBecomesReady: blackout again
            else:
                longer = min(backoff * self.config.backoff_multiplier, self.config.backoff_max_s)
                self._reconnect[instance] = (retry_at + self._jittered(longer), longer)
        if self._updates.due(now):
            self._rebuild(now)

    def _rebuild(self, now: float) -> None:
        self._schedule = scheduler_weights([self._weights[i].weight(now, self.config) for i in self._ready])

    def _jittered(self, seconds: float) -> float:
        return seconds * (1 + self._rng.uniform(-self.config.backoff_jitter, self.config.backoff_jitter))

