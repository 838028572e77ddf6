"""Who stands by for whom, and who adopts a silent worker's partitions (weigh/standby.py Peers): pure."""

from __future__ import annotations

from core.settings import Settings
from weigh.standby import Peers, silence_s


def peers(me: str, now: float = 100.0, **published: list[int]) -> Peers:
    """Peers as `me` sees them at `now`: each named worker published its partitions just now."""
    seen = Peers(me, silence_s=6.0)
    for worker, partitions in published.items():
        for p in partitions:
            seen.observe(worker, p, now)
    return seen


def test_two_workers_stand_by_for_each_other() -> None:
    a = peers("a", b=[1, 3])
    assert a.buddy(100.0) == "b"
    assert a.standby({0, 2}, 100.0) == {1, 3}
    assert a.adopted({1, 3}, 100.0) == {}  # b is alive


def test_each_of_three_stands_by_for_its_successor_only() -> None:
    assert peers("a", b=[1], c=[2]).standby({0}, 100.0) == {1}
    assert peers("b", a=[0], c=[2]).standby({1}, 100.0) == {2}
    assert peers("c", a=[0], b=[1]).standby({2}, 100.0) == {0}  # the ring wraps


def test_a_silent_worker_is_adopted_by_the_one_that_stood_by_for_it_alone() -> None:
    later = 100.0 + 6.1
    a, c = peers("a", b=[1], c=[2]), peers("c", a=[0], b=[1])
    for seen in (a, c):
        seen.observe("c" if seen.me == "a" else "a", 2 if seen.me == "a" else 0, later)  # the live one goes on
    assert a.adopter("b", later) == "a" and c.adopter("b", later) == "a"
    assert a.standby({0}, later) == {1, 2}  # b's (adopted) and c's (its new buddy)
    assert a.adopted({1, 2}, later) == {1: "b"}
    assert c.standby({2}, later) == {0}  # c does not adopt b's partitions


def test_silence_is_judged_against_the_session_timeout() -> None:
    seen = peers("a", b=[1])
    assert seen.adopted({1}, 106.0) == {}
    assert seen.adopted({1}, 106.1) == {1: "b"}


def test_adoption_ends_when_another_worker_publishes_the_partition() -> None:
    seen = peers("a", b=[1, 3])
    assert seen.adopted({1, 3}, 110.0) == {1: "b", 3: "b"}
    seen.observe("c", 1, 110.0)  # the group gave partition 1 to c, which now publishes it
    assert seen.adopted({1, 3}, 110.0) == {3: "b"}


def test_own_feeds_change_nothing_so_adopting_does_not_end_the_adoption() -> None:
    seen = peers("a", b=[1])
    seen.observe("a", 1, 110.0)  # a publishes b's services while it adopts them
    assert seen.owners == {1: "b"}
    assert seen.adopted({1}, 110.0) == {1: "b"}


def test_a_lone_worker_stands_by_for_nobody() -> None:
    assert peers("a").buddy(100.0) is None
    assert peers("a").standby({0, 1}, 100.0) == set()


def test_silence_is_at_least_a_heartbeat_and_a_cycle() -> None:
    assert silence_s(Settings()) == 6.0  # the session timeout; heartbeat 2 cycles (4 s) + a cycle = 6 s
    assert silence_s(Settings(weights_heartbeat_cycles=5)) == 12.0
