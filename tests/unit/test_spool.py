"""The disk spool: FIFO order, replay cursor across reopen, size bound dropping the oldest segment."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.spool import Spool


def _fill(spool: Spool, n: int, start: int = 0, kind: str = "rpc") -> None:
    for i in range(start, start + n):
        spool.append(kind, f"k{i % 3}".encode(), f'{{"seq":{i}}}'.encode())


def _drain(spool: Spool, batch: int = 7) -> list[bytes]:
    out = []
    while True:
        records, pos = spool.read(batch)
        if not records:
            return out
        out.extend(r.value for r in records)
        spool.commit(pos)


def test_fifo_across_segments_and_files_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1024)
    _fill(spool, 200)
    assert len(spool) == 200
    assert len(list(tmp_path.glob("*.seg"))) > 3
    values = _drain(spool)
    assert values == [f'{{"seq":{i}}}'.encode() for i in range(200)]
    assert len(spool) == 0
    assert list(tmp_path.glob("*.seg")) == []  # fully drained leaves no segment behind
    _fill(spool, 5, start=200)  # and it keeps working afterwards
    assert _drain(spool) == [f'{{"seq":{i}}}'.encode() for i in range(200, 205)]


def test_reopen_resumes_at_committed_position(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=2048)
    _fill(spool, 100)
    _, pos = spool.read(30)
    spool.commit(pos)
    spool.read(10)  # read but not committed: must come again after a restart
    spool.close()
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=2048)
    assert len(again) == 70
    assert _drain(again)[0] == b'{"seq":30}'


def test_key_none_and_kind_roundtrip(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 16, segment_bytes=1 << 15)
    spool.append("dlq", None, b"x")
    spool.append("tcp", b"", b"y")
    records, _ = spool.read(10)
    assert [(r.kind, r.key, r.value) for r in records] == [("dlq", None, b"x"), ("tcp", b"", b"y")]


def test_torn_tail_is_cut_on_open(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 16, segment_bytes=1 << 15)
    _fill(spool, 10)
    spool.close()
    seg = next(tmp_path.glob("*.seg"))
    with seg.open("ab") as fh:
        fh.write(b"\x00\x00\x00\x10garbage")  # half a frame, as after a crash mid-write
    again = Spool(tmp_path, max_bytes=1 << 16, segment_bytes=1 << 15)
    assert len(again) == 10
    _fill(again, 1, start=10)
    assert _drain(again)[-1] == b'{"seq":10}'


def test_full_spool_drops_oldest_segment_and_counts(tmp_path: Path) -> None:
    dropped: dict[str, int] = {}
    spool = Spool(
        tmp_path,
        max_bytes=4096,
        segment_bytes=1024,
        on_drop=lambda k, n: dropped.__setitem__(k, dropped.get(k, 0) + n),
    )
    _fill(spool, 500)
    assert spool.size_bytes <= 4096
    kept = _drain(spool)
    assert dropped["rpc"] + len(kept) == 500
    assert kept == [f'{{"seq":{i}}}'.encode() for i in range(500 - len(kept), 500)]  # newest survive, in order


def test_commit_of_dropped_position_is_ignored(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=4096, segment_bytes=1024)
    _fill(spool, 10)
    _, stale = spool.read(5)
    _fill(spool, 400, start=10)  # the segment holding `stale` is dropped meanwhile
    spool.commit(stale)
    values = _drain(spool)
    assert values and values == sorted(values, key=lambda v: int(v[7:-1]))


def test_bound_must_hold_two_segments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Spool(tmp_path, max_bytes=1000, segment_bytes=1000)
