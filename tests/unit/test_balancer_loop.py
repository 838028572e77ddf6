"""The loop every balancer adapter shares, against a real HTTP feed server and an adapter that holds its
balancer's state in memory: new revisions applied, unchanged renders skipped, rate limit, last known
good with backoff, drift re-applied, --dry-run, stale feed reported."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from balancer.adapter import Adapter, BalancerError, routable_weights
from balancer.client import FeedView, WeightFeedClient
from balancer.loop import Follower, LoopOptions
from tests.unit.test_balancer_client import FeedServer, eventually, feed

A, B = "10.0.0.1:80", "10.0.0.2:80"


class InMemory(Adapter):
    kind = "memory"

    def __init__(self) -> None:
        self.held, self.applies, self.refuse = "", [], False

    def target(self) -> str:
        return "memory"

    def render(self, view: FeedView) -> str:
        return json.dumps(routable_weights(view), sort_keys=True)

    def apply(self, rendered: str) -> None:
        if self.refuse:
            raise BalancerError("the balancer says no")
        self.held = rendered
        self.applies.append(time.monotonic())

    def verify(self, rendered: str) -> str:
        return "" if self.held == rendered else "differs"


@pytest.fixture
def follow() -> Iterator[Callable[..., tuple[FeedServer, InMemory, Follower, list[str]]]]:
    stops: list[Callable[[], None]] = []

    def start(**options: float | bool) -> tuple[FeedServer, InMemory, Follower, list[str]]:
        server = FeedServer(feed("r1", {A: 3, B: 1})).start()
        client = WeightFeedClient(server.url, "shop.cart", wait_s=2, max_backoff_s=0.2).start()
        assert client.wait_ready(5)
        adapter, lines = InMemory(), []
        follower = Follower(adapter, client, LoopOptions(max_backoff_s=0.4, **options), lines.append)  # type: ignore[arg-type]
        stop = threading.Event()
        thread = threading.Thread(target=follower.run, args=(stop,), daemon=True)
        thread.start()
        stops.append(lambda: (stop.set(), thread.join(5), client.close(), server.stop()))
        return server, adapter, follower, lines

    yield start
    for stop in stops:
        stop()


def test_applies_new_revisions_skips_unchanged_renders_and_rate_limits(follow: Callable[..., tuple]) -> None:
    server, adapter, follower, _ = follow(min_interval_s=0.6)
    assert eventually(lambda: adapter.held == json.dumps({A: 3, B: 1}))
    for n, weight in enumerate((5, 6, 7), start=2):  # three changes inside one rate-limit interval
        server.document = feed(f"r{n}", {A: weight, B: 1})
        time.sleep(0.05)
    assert eventually(lambda: adapter.held == json.dumps({A: 7, B: 1}))
    server.document = feed("r9", {A: 7, B: 1}, {B: "slow_start"})  # new revision, same render
    assert eventually(lambda: follower.state.applied_revision == "r9")
    gaps = [b - a for a, b in zip(adapter.applies, adapter.applies[1:], strict=False)]
    assert len(adapter.applies) <= 3 and all(gap >= 0.55 for gap in gaps), gaps  # coalesced, spaced
    assert follower.state.applies == len(adapter.applies)


def test_keeps_the_last_good_state_backs_off_and_recovers(follow: Callable[..., tuple]) -> None:
    server, adapter, follower, lines = follow()
    assert eventually(lambda: follower.state.applies == 1)
    adapter.refuse = True
    server.document = feed("r2", {A: 1, B: 1})
    assert eventually(lambda: follower.state.failures["apply"] >= 2)
    assert adapter.held == json.dumps({A: 3, B: 1}) and follower.state.applied_revision == "r1"
    assert "[memory] apply of revision r2 failed: the balancer says no (holding r1; retry in 0.4 s)" in lines
    server.document = feed("r3", {A: 0, B: 0})  # routes nothing: refused at render, r1 still held
    assert eventually(lambda: follower.state.failures["render"] >= 1)
    adapter.refuse = False
    server.document = feed("r4", {A: 1, B: 2})
    assert eventually(lambda: adapter.held == json.dumps({A: 1, B: 2}) and follower.state.applied_revision == "r4")


def test_drift_is_found_on_resync_and_applied_again(follow: Callable[..., tuple]) -> None:
    _, adapter, follower, lines = follow(resync_s=0.3)
    assert eventually(lambda: follower.state.applies == 1)
    adapter.held = "someone else's config"
    assert eventually(lambda: follower.state.applies == 2 and adapter.held == json.dumps({A: 3, B: 1}))
    assert any("drifted (differs): applying again" in line for line in lines)


def test_dry_run_prints_the_change_and_applies_nothing(follow: Callable[..., tuple]) -> None:
    server, adapter, follower, lines = follow(dry_run=True)
    assert eventually(lambda: follower.state.applied_revision == "r1")
    server.document = feed("r2", {A: 5, B: 1})
    assert eventually(lambda: follower.state.applied_revision == "r2")
    assert adapter.applies == [] and follower.state.applies == 0
    diff = lines[-1]
    assert diff.startswith("[memory] dry run: revision r2 would change memory:")
    assert f'-{{"{A}": 3, "{B}": 1}}' in diff and f'+{{"{A}": 5, "{B}": 1}}' in diff


def test_a_stale_feed_is_reported_and_the_weights_kept(follow: Callable[..., tuple]) -> None:
    server, adapter, follower, lines = follow()
    assert eventually(lambda: follower.state.applies == 1 and not follower.state.feed_stale)
    server.status = 503  # from the next request on (the parked long-poll ends within wait_s = 2 s)
    assert eventually(lambda: follower.state.feed_stale, 5)
    assert adapter.held == json.dumps({A: 3, B: 1})
    assert any(line.startswith("[memory] feed stale (HTTPStatusError") and "keeping revision r1" in line
               for line in lines)
    server.status, server.document = 200, feed("r2", {A: 1, B: 1})
    assert eventually(lambda: not follower.state.feed_stale and adapter.held == json.dumps({A: 1, B: 1}), 5)
