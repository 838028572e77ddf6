"""A refused connection takes the instance out of this client's picks at once, retried with backoff."""

from __future__ import annotations

import random
import socket
import time

from balancer.client import Balancer, FeedView
from balancer.guard import ConnectGuard, tcp_reachable


class Fixed:
    def __init__(self, weights: dict[str, int]) -> None:
        self.view = FeedView(weights, "r1", "normal", False, (1, False))

    def current(self) -> FeedView:
        return self.view


def test_backoff_grows_by_1_6_with_jitter_and_a_connection_forgets_it() -> None:
    guard = ConnectGuard(rng=random.Random(1))
    guard.refused("a", 0.0)
    assert guard.skipped(0.5) == {"a"}
    first = next(t / 100 for t in range(0, 300) if not guard.skipped(t / 100))
    assert 0.8 <= first <= 1.2  # 1 s +-20%
    guard.refused("a", first)
    second = next(first + t / 100 for t in range(0, 400) if not guard.skipped(first + t / 100))
    assert 1.6 * 0.8 <= second - first <= 1.6 * 1.2
    guard.connected("a")
    guard.refused("a", 10.0)
    assert guard.skipped(10.0 + 1.25) == frozenset()  # back to the initial 1 s


def test_the_balancer_stops_picking_a_refusing_instance_on_the_first_refusal() -> None:
    now = [0.0]
    balancer = Balancer(Fixed({"a": 100, "b": 100, "c": 100}), "p2c", rng=random.Random(2), clock=lambda: now[0])
    picked = balancer.pick()
    balancer.report(picked, ok=False, latency_ms=1.0, unreachable=True)
    picks = set()
    for _ in range(200):
        instance = balancer.pick()
        balancer.report(instance, ok=True, latency_ms=5.0)
        picks.add(instance)
    assert picked not in picks
    now[0] = 1.5  # past the first backoff: back at its feed weight
    assert picked in {balancer.pick() for _ in range(200)}


def test_a_call_block_reports_a_refused_connection_as_unreachable() -> None:
    balancer = Balancer(Fixed({"a": 1, "b": 1}), "swrr")
    try:
        with balancer.call() as instance:
            raise ConnectionRefusedError
    except ConnectionRefusedError:
        pass
    assert balancer.guard.skipped(time.monotonic()) == {instance}


def test_a_reconnect_check_spends_no_call_on_a_dead_instance() -> None:
    listening = {"a": False}
    guard = ConnectGuard(rng=random.Random(3), reconnect=lambda name: listening[name])
    guard.refused("a", 0.0)
    assert guard.skipped(5.0) == {"a"}  # checked at ~1 s: still refused, so the next, longer wait began
    listening["a"] = True
    assert guard.skipped(60.0) == frozenset()


def test_tcp_reachable_tells_a_listening_port_from_a_closed_one() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    check = tcp_reachable(timeout_s=1.0)
    assert check(f"127.0.0.1:{port}")
    server.close()
    assert not check(f"127.0.0.1:{port}")
