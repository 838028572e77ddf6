"""Client-side load balancing from the svcpulse weight feed (docs/balancer.md).

    with WeightFeedClient("http://svcpulse:8000", "shop.cart") as feed:
        balancer = Balancer(feed, picker="p2c")
        with balancer.call() as instance:   # counts the call in flight, reports ok/latency on exit
            httpx.get(f"http://{instance}/cart")

`WeightFeedClient` follows GET {base_url}/v1/weights/{service} in a background thread by long-poll
(`?wait_s=N` + `If-None-Match`, 304 = unchanged). When the API is unreachable it keeps the last
weights it got; once nothing has been heard for `expiry_s`, it spreads calls equally instead, as
gRPC's weighted round robin does when its weights expire (old weights may be worse than none).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol

import httpx

from balancer.guard import ConnectGuard
from balancer.pickers import Picker, SmoothWeightedRoundRobin, SwrrLocalVeto, WeightedP2C

PICKERS = ("swrr", "p2c", "swrr-local")


@dataclass(frozen=True)
class FeedView:
    """The weights to use now; `key` changes whenever they do (new revision, or staleness flips)."""

    weights: Mapping[str, int]
    revision: str = ""
    mode: str = ""
    stale: bool = True  # no contact with the API within expiry_s (or never): weights are equal
    key: tuple[int, bool] = (0, True)
    states: Mapping[str, str] = field(default_factory=dict)
    api_stale: bool = False  # the API said so: its store is unreachable, these are its last weights


class WeightSource(Protocol):
    def current(self) -> FeedView: ...


def _equal(view: FeedView, fallback: Sequence[str]) -> dict[str, int]:
    """Equal weights over the last known instances, minus drained ones (an operator's choice
    outlives the data); the configured fallback list if no feed was ever received."""
    names = [n for n in view.weights if view.states.get(n) != "drained"] or list(view.weights)
    return dict.fromkeys(names or fallback, 1)


def _etag_revision(header: str | None) -> str:
    """The revision inside an ETag: tolerant of W/ prefixes and of missing quotes."""
    value = (header or "").strip()
    return value.removeprefix("W/").strip('"')


class WeightFeedClient:
    """Follows one service's weight feed from a daemon thread; `current()` is cheap and thread-safe.

    The thread runs its own asyncio loop with an httpx.AsyncClient, because a parked long-poll can
    then be cancelled at once by `close()` (a blocking request cannot be interrupted from outside).
    """

    def __init__(
        self,
        base_url: str,
        service: str,
        token: str | None = None,
        *,
        wait_s: float = 30.0,
        expiry_s: float = 180.0,
        max_backoff_s: float = 10.0,
        fallback: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url, self.service, self._token = base_url, service, token
        self.wait_s, self.expiry_s, self.max_backoff_s = wait_s, expiry_s, max_backoff_s
        self._fallback = tuple(fallback)
        self._clock = clock
        self._lock = threading.Lock()
        self._news = threading.Condition(self._lock)  # notified on a new revision and on lost/regained contact
        self._received = False
        self._view = FeedView(weights={})
        self._generation = 0
        self._last_contact: float | None = None
        self.last_error = ""
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, name=f"weight-feed-{service}", daemon=True)

    def start(self) -> WeightFeedClient:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop following; a long-poll in flight is cancelled, so this returns promptly."""
        self._stop.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop already finished on its own
                loop.call_soon_threadsafe(task.cancel)
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def __enter__(self) -> WeightFeedClient:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def wait_ready(self, timeout: float) -> bool:
        """True once a first feed has been received."""
        return self._ready.wait(timeout)

    def latest(self) -> FeedView | None:
        """The last feed received, exactly as received (never the equal fallback); None before the first.

        For balancers that keep their last applied weights while the API is away (balancer/loop.py).
        """
        with self._lock:
            return self._view if self._received else None

    def wait_news(self, generation: int, timeout: float) -> None:
        """Block until the revision moves past `generation` (FeedView.key[0]), contact is lost or
        regained, or `timeout` passes; the caller re-reads what it needs."""
        with self._news:
            erring = bool(self.last_error)
            self._news.wait_for(lambda: self._generation != generation or bool(self.last_error) != erring, timeout)

    def contact_age_s(self) -> float | None:
        """Seconds since the API last answered (200 or 304); None if it never has."""
        with self._lock:
            last = self._last_contact
        return None if last is None else self._clock() - last

    def current(self) -> FeedView:
        with self._lock:
            view, last = self._view, self._last_contact
        stale = last is None or self._clock() - last > self.expiry_s
        if not stale:
            return view
        return FeedView(
            _equal(view, self._fallback), view.revision, view.mode, True, (self._generation, True)
        )

    def _run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(self._follow())

    async def _follow(self) -> None:
        # Publish loop and task before checking _stop: close() sets _stop first, then reads them,
        # so either it sees them and cancels, or this check sees _stop.
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        # The read timeout must outlast the server's long-poll wait.
        timeout = httpx.Timeout(5.0, read=self.wait_s + 10.0)
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout) as http:
            delay = 0.0
            loop = asyncio.get_running_loop()
            while not self._stop.is_set():
                try:
                    started = loop.time()
                    if not await self._poll(http):
                        # Unchanged: pace the next request, in case the server answers at once
                        # instead of holding the long-poll (at most one per min(1 s, wait_s)).
                        await asyncio.sleep(min(1.0, self.wait_s) - (loop.time() - started))
                    delay = 0.0
                    self._set_error("")  # in contact again
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                    # Unreachable, a bad status or a malformed body: keep what we have, back off.
                    self._set_error(f"{type(exc).__name__}: {exc}")
                    delay = min(self.max_backoff_s, max(0.25, delay * 2))
                    await asyncio.sleep(delay)

    def _set_error(self, error: str) -> None:
        with self._news:
            flipped = bool(error) != bool(self.last_error)
            self.last_error = error
            if flipped:
                self._news.notify_all()

    async def _poll(self, http: httpx.AsyncClient) -> bool:
        """One request; True if it brought a new revision."""
        with self._lock:
            revision = self._view.revision
        # The first request (no revision yet) must answer at once; later ones wait for a change.
        headers = {"If-None-Match": f'"{revision}"'} if revision else {}
        params = {"wait_s": f"{self.wait_s:g}"} if revision else {}
        response = await http.get(f"/v1/weights/{self.service}", params=params, headers=headers)
        if response.status_code == 304:
            with self._lock:
                self._last_contact = self._clock()
            return False
        response.raise_for_status()
        return self._accept(response.json(), _etag_revision(response.headers.get("etag")))

    def _accept(self, feed: dict[str, Any], etag_revision: str) -> bool:
        rows = feed["instances"]
        weights = {str(r["instance"]): int(r["weight"]) for r in rows}
        states = {str(r["instance"]): str(r.get("state", "")) for r in rows}
        revision = etag_revision or str(feed["revision"])
        api_stale = bool(feed.get("stale", False))
        with self._news:
            changed = revision != self._view.revision or api_stale != self._view.api_stale
            if changed:
                self._generation += 1
            key = (self._generation, False)
            self._view = FeedView(weights, revision, str(feed.get("mode", "")), False, key, states, api_stale)
            self._last_contact = self._clock()
            self._received = True
            if changed:
                self._news.notify_all()
        self._ready.set()
        return changed


class Balancer:
    """Picks instances by the feed's weights; tracks calls in flight for the P2C picker.

    Every `pick()` must be matched by a `report()` (or use `call()`, which does both).
    `on_result(instance, ok, latency_ms)` is called on each report, e.g. to emit telemetry.
    A call reported `unreachable` (connection refused) takes its instance out of this client's
    picks at once, retried with gRPC's connection backoff (balancer/guard.py; pass
    `reconnect=tcp_reachable()` to retry with a bare connect instead of a call); the feed sees the
    failure too, seconds later, and decides for everyone.
    """

    def __init__(
        self,
        source: WeightSource,
        picker: Literal["swrr", "p2c", "swrr-local"] = "swrr",
        *,
        rng: random.Random | None = None,
        on_result: Callable[[str, bool, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        reconnect: Callable[[str], bool] | None = None,
    ) -> None:
        if picker not in PICKERS:
            raise ValueError(f"picker must be one of {', '.join(PICKERS)}, got {picker!r}")
        self._source = source
        self._picker: Picker = (
            SmoothWeightedRoundRobin({}) if picker == "swrr"
            else WeightedP2C({}, rng) if picker == "p2c"
            else SwrrLocalVeto({}, rng, clock=clock)
        )
        self._local = self._picker if isinstance(self._picker, SwrrLocalVeto) else None
        self._key: tuple[tuple[int, bool], int] | None = None
        self._inflight: Counter[str] = Counter()
        self._on_result = on_result
        self._clock = clock
        self.guard = ConnectGuard(rng=random.Random(rng.random()) if rng else None, reconnect=reconnect)
        self._lock = threading.Lock()

    def pick(self) -> str:
        """An instance for the next call, counted in flight until `report()`."""
        view = self._source.current()
        with self._lock:
            skipped = self.guard.skipped(self._clock()) if self.guard.version else frozenset()
            key = (view.key, self.guard.version)
            if key != self._key:
                self._picker.update({n: 0 if n in skipped else w for n, w in view.weights.items()})
                self._key = key
            instance = self._picker.pick(self._inflight)
            self._inflight[instance] += 1
        return instance

    def report(self, instance: str, ok: bool, latency_ms: float, *, unreachable: bool = False) -> None:
        with self._lock:
            self._inflight[instance] -= 1
            if self._inflight[instance] <= 0:
                del self._inflight[instance]
            if unreachable:
                self.guard.refused(instance, self._clock())
            elif self.guard.version:
                self.guard.connected(instance)
            if self._local is not None and not unreachable:
                self._local.observe(instance, latency_ms)
        if self._on_result is not None:
            self._on_result(instance, ok, latency_ms)

    @contextmanager
    def call(self) -> Iterator[str]:
        """Pick, yield the instance, then report: ok unless the block raised."""
        instance = self.pick()
        started = time.perf_counter()
        ok, unreachable = False, False
        try:
            yield instance
            ok = True
        except (ConnectionRefusedError, httpx.ConnectError):
            unreachable = True
            raise
        finally:
            self.report(instance, ok, (time.perf_counter() - started) * 1000, unreachable=unreachable)

    def inflight(self) -> dict[str, int]:
        with self._lock:
            return dict(self._inflight)
