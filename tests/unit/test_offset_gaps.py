"""pipeline/gaps.py: a hole in a partition's offsets is fetched again once, then believed."""

from __future__ import annotations

from pipeline.gaps import GapGuard, Verdict

P0, P1 = ("svcpulse.rpc", 0), ("svcpulse.rpc", 1)


def test_a_hole_is_refetched_once_then_confirmed() -> None:
    guard = GapGuard()
    assert [guard.check(P0, n) for n in (5, 6, 7)] == [Verdict.TAKE] * 3  # the first offset sets the pace
    assert guard.check(P0, 10) is Verdict.REFETCH  # 8 and 9 skipped: fetch again from 8
    assert guard.expected[P0] == 8
    assert guard.check(P0, 10) is Verdict.CONFIRMED  # the refetch starts at 10 too: the broker has no 8, 9
    assert guard.check(P0, 11) is Verdict.TAKE
    assert guard.check(P1, 100) is Verdict.TAKE  # partitions are apart


def test_a_refetch_that_fills_the_hole_takes_everything() -> None:
    guard = GapGuard()
    guard.check(P0, 1)
    assert guard.check(P0, 4) is Verdict.REFETCH
    assert [guard.check(P0, n) for n in (2, 3, 4)] == [Verdict.TAKE] * 3
    assert guard.check(P0, 9) is Verdict.REFETCH  # a later, different hole is fetched again too


def test_going_back_is_no_hole_and_a_new_owner_starts_afresh() -> None:
    guard = GapGuard()
    guard.check(P0, 50)
    assert guard.check(P0, 20) is Verdict.TAKE  # redelivered after a seek or a failed write
    guard.forget({P0})
    assert guard.check(P0, 90) is Verdict.TAKE  # reassigned: the position is the group's commit
