"""A client's own answer to a refused connection: skip that instance, retry it with gRPC's backoff.

A refused connection is the one signal that needs no statistics: nothing listens there now. The
feed pools every caller's calls and reacts in seconds; this reacts on the first refusal, locally,
as gRPC does when a subchannel leaves READY (doc/connection-backoff.md: retry after 1 s, then x1.6
per failed attempt, +-20% jitter, at most 120 s). Once the retry time passes, the instance is back
in the picker at its feed weight and the next call to it is the retry; with a `reconnect` check
(e.g. `tcp_reachable`, a bare TCP connect, as gRPC reconnects a subchannel) no call is spent on it:
the check runs first and a refused check just starts the next, longer wait. One more refusal sends
it out again for longer, a call that connects forgets it. Clock-free: the caller passes the time.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 1.0  # connection-backoff.md INITIAL_BACKOFF
    multiplier: float = 1.6  # MULTIPLIER
    jitter: float = 0.2  # JITTER
    max_s: float = 120.0  # MAX_BACKOFF


class ConnectGuard:
    def __init__(self, backoff: Backoff | None = None, rng: random.Random | None = None,
                 reconnect: Callable[[str], bool] | None = None) -> None:
        self.backoff = backoff or Backoff()
        self._reconnect = reconnect
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
            if self._reconnect is not None and not self._reconnect(instance):
                self.refused(instance, now)
                continue
            del self._until[instance]
            self.version += 1
        return frozenset(self._until)


def tcp_reachable(timeout_s: float = 0.2) -> Callable[[str], bool]:
    """A `reconnect` check: can a TCP connection to "host:port" be opened now? (blocks up to timeout_s)"""

    def check(instance: str) -> bool:
        host, _, port = instance.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
        except OSError:
            return False
        return True

    return check
