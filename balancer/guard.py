"""A client's own answer to a refused connection: skip that instance, retry it with gRPC's backoff.

A refused connection is the one signal that needs no statistics: nothing listens there now. The
feed pools every caller's calls and reacts in seconds; this reacts on the first refusal, locally,
as gRPC does when a subchannel leaves READY (doc/connection-backoff.md: retry after 1 s, then x1.6
per failed attempt, +-20% jitter, at most 120 s). Once the retry time passes the instance is back
in the picker at its feed weight; one more refusal sends it out again for longer, a call that
connects forgets it. Pure and clock-free: the caller passes the time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 1.0  # connection-backoff.md INITIAL_BACKOFF
    multiplier: float = 1.6  # MULTIPLIER
    jitter: float = 0.2  # JITTER
    max_s: float = 120.0  # MAX_BACKOFF


class ConnectGuard:
    def __init__(self, backoff: Backoff | None = None, rng: random.Random | None = None) -> None:
        self.backoff = backoff or Backoff()
        self._rng = rng or random.Random()
        self._until: dict[str, float] = {}  # instance -> skipped until
        self._delay: dict[str, float] = {}  # instance -> the backoff its next refusal starts from
        self.version = 0  # changes whenever the set of skipped instances may have changed

    def refused(self, instance: str, now: float) -> None:
        delay = self._delay.get(instance, self.backoff.initial_s)
        jitter = self._rng.uniform(-self.backoff.jitter, self.backoff.jitter)
        self._until[instance] = now + delay * (1 + jitter)
        self._delay[instance] = min(delay * self.backoff.multiplier, self.backoff.max_s)
        self.version += 1

    def connected(self, instance: str) -> None:
        if instance in self._delay:
            self._until.pop(instance, None)
            del self._delay[instance]
            self.version += 1

    def skipped(self, now: float) -> frozenset[str]:
        """Instances to leave out now; expired entries are dropped (their backoff is remembered)."""
        for instance in [i for i, until in self._until.items() if until <= now]:
            del self._until[instance]
            self.version += 1
        return frozenset(self._until)
