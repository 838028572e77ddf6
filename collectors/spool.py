"""A bounded, append-only, on-disk queue of encoded events: the sink's store while Kafka is away.

Layout: `<dir>/<20-digit id>.seg` segment files of CRC-checked frames, plus `cursor.json` (how far
replay has got). Appends go to the newest segment; a full segment is closed and a new one started.
When the total size would pass `max_bytes` the OLDEST segment is deleted and its unread records are
counted as dropped (newest data is worth more for routing than old data). Replay reads frames in
append order and `commit`s positions once Kafka has acknowledged them, so a restart resumes where
delivery stopped (records read but not committed are sent again: at-least-once).

Frames are flushed to the OS on every append (visible to the reader, survive a process crash) and
fsynced on segment roll and close; a torn frame at the end after a machine crash is cut off on open.
Thread-safe: one lock around everything (appends are a few microseconds).
"""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, NamedTuple

_HEADER = struct.Struct(">IIBH")  # value length, crc32(kind + key + value), kind length, key length
_NO_KEY = 0xFFFF
_CURSOR = "cursor.json"


class Record(NamedTuple):
    kind: str
    key: bytes | None
    value: bytes


class Position(NamedTuple):
    """Just after some record: segment id, byte offset in it, records before that offset in it."""

    segment: int
    offset: int
    index: int


class _Segment:
    def __init__(self, seg_id: int, path: Path, size: int, count: int) -> None:
        self.id, self.path, self.size, self.count = seg_id, path, size, count


def _frame(record: Record) -> bytes:
    kind = record.kind.encode()
    key = record.key if record.key is not None else b""
    if len(kind) > 255 or len(key) >= _NO_KEY:
        raise ValueError("spool: kind or key too long")
    crc = zlib.crc32(record.value, zlib.crc32(key, zlib.crc32(kind)))
    header = _HEADER.pack(len(record.value), crc, len(kind), _NO_KEY if record.key is None else len(key))
    return header + kind + key + record.value


def _parse(buf: bytes, pos: int) -> tuple[Record, int] | None:
    """The record framed at `pos` and the offset after it, or None if incomplete or corrupt."""
    if pos + _HEADER.size > len(buf):
        return None
    vlen, crc, klen, keylen = _HEADER.unpack_from(buf, pos)
    start = pos + _HEADER.size
    key_len = 0 if keylen == _NO_KEY else keylen
    end = start + klen + key_len + vlen
    if end > len(buf):
        return None
    kind, key = buf[start : start + klen], buf[start + klen : start + klen + key_len]
    value = buf[start + klen + key_len : end]
    if zlib.crc32(value, zlib.crc32(key, zlib.crc32(kind))) != crc:
        return None
    return Record(kind.decode(), None if keylen == _NO_KEY else key, value), end


def _scan(path: Path, start: int = 0) -> tuple[list[Record], int]:
    """All intact records of a segment from `start`, and the offset where intact data ends."""
    buf = path.read_bytes()
    records, pos = [], start
    while (parsed := _parse(buf, pos)) is not None:
        record, pos = parsed
        records.append(record)
    return records, pos


class Spool:
    """Size-bounded FIFO of records on disk. `on_drop(kind, n)` is told about records lost to the bound."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        max_bytes: int = 256 * 1024 * 1024,
        segment_bytes: int = 16 * 1024 * 1024,
        on_drop: Callable[[str, int], None] | None = None,
    ) -> None:
        if max_bytes < 2 * segment_bytes:
            raise ValueError("spool: max_bytes must hold at least two segments")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.segment_bytes = max_bytes, segment_bytes
        self._on_drop = on_drop or (lambda kind, n: None)
        self._lock = threading.RLock()
        self._segments: list[_Segment] = []
        self._writer: BinaryIO | None = None
        self._load()

    # -- state ---------------------------------------------------------------------------------
    def _load(self) -> None:
        for path in sorted(self.dir.glob("*.seg")):
            records, end = _scan(path)
            if end < path.stat().st_size:  # a torn or corrupt tail: keep what is intact
                os.truncate(path, end)
            self._segments.append(_Segment(int(path.stem), path, end, len(records)))
        self._read = self._load_cursor()
        self._skip_finished()

    def _skip_finished(self) -> None:
        """Delete segments the cursor has read to the end (a crash may leave one behind)."""
        while self._segments and self._segments[0].id < self._read.segment:
            self._segments.pop(0).path.unlink(missing_ok=True)
        while self._segments and self._segments[0].size == self._read.offset:
            if len(self._segments) == 1:  # fully drained: start afresh, leave no files behind
                self._close_writer()
                last = self._segments.pop(0)
                last.path.unlink(missing_ok=True)
                self._read = Position(last.id + 1, 0, 0)
                break
            self._segments.pop(0).path.unlink(missing_ok=True)
            self._read = Position(self._segments[0].id, 0, 0)

    def _load_cursor(self) -> Position:
        first = self._segments[0].id if self._segments else 0
        try:
            saved = Position(**json.loads((self.dir / _CURSOR).read_text()))
        except (OSError, ValueError, TypeError):
            return Position(first, 0, 0)
        seg = self._find(saved.segment)
        if seg is None or saved.offset > seg.size or saved.index > seg.count:
            return Position(first, 0, 0)
        return saved

    def _find(self, seg_id: int) -> _Segment | None:
        return next((s for s in self._segments if s.id == seg_id), None)

    def __len__(self) -> int:
        """Records appended and not yet committed."""
        with self._lock:
            total = sum(s.count for s in self._segments if s.id >= self._read.segment)
            return total - (self._read.index if self._find(self._read.segment) else 0)

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return sum(s.size for s in self._segments)

    # -- writing -------------------------------------------------------------------------------
    def append(self, kind: str, key: bytes | None, value: bytes) -> Position:
        """Add one record at the end; returns the position just after it."""
        frame = _frame(Record(kind, key, value))
        with self._lock:
            seg = self._writable(len(frame))
            while self.size_bytes + len(frame) > self.max_bytes and len(self._segments) > 1:
                self._drop_oldest()
            assert self._writer is not None
            self._writer.write(frame)
            self._writer.flush()  # to the OS: the replay reader opens the file separately
            seg.size += len(frame)
            seg.count += 1
            return Position(seg.id, seg.size, seg.count)

    def _writable(self, frame_len: int) -> _Segment:
        """The segment to append to, rolling to a new one when the current one is full."""
        last = self._segments[-1] if self._segments else None
        if last is not None and self._writer is not None and last.size + frame_len <= self.segment_bytes:
            return last
        if last is not None and self._writer is None and last.size + frame_len <= self.segment_bytes:
            self._writer = open(last.path, "ab")  # noqa: SIM115 - held open across appends
            return last
        self._close_writer()
        seg_id = last.id + 1 if last else max(self._read.segment, 1)
        seg = _Segment(seg_id, self.dir / f"{seg_id:020d}.seg", 0, 0)
        self._writer = open(seg.path, "ab")  # noqa: SIM115
        self._segments.append(seg)
        if last is None:
            self._read = Position(seg_id, 0, 0)
        return seg

    def _drop_oldest(self) -> None:
        oldest = self._segments.pop(0)
        start = self._read.offset if oldest.id == self._read.segment else 0
        if oldest.id >= self._read.segment:  # unread records are lost: count them per kind
            for kind, n in Counter(r.kind for r in _scan(oldest.path, start)[0]).items():
                self._on_drop(kind, n)
        oldest.path.unlink(missing_ok=True)
        if self._read.segment <= oldest.id:
            self._read = Position(self._segments[0].id, 0, 0)
            self._save_cursor()

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            os.fsync(self._writer.fileno())
            self._writer.close()
            self._writer = None

    # -- replay --------------------------------------------------------------------------------
    def read(self, max_records: int, max_bytes: int = 1 << 20) -> tuple[list[Record], Position]:
        """Up to `max_records` records from the cursor on (not removed), and the position after them.

        One call reads from one segment only; the next call continues in the next segment.
        """
        with self._lock:
            pos, seg = self._read, self._find(self._read.segment)
            if seg is None:
                return [], pos
            records, used = self._read_from(seg, pos.offset, max_records, max_bytes)
            return records, Position(seg.id, pos.offset + used, pos.index + len(records))

    @staticmethod
    def _read_from(seg: _Segment, offset: int, max_records: int, max_bytes: int) -> tuple[list[Record], int]:
        remaining = seg.size - offset
        records: list[Record] = []
        at = 0
        with open(seg.path, "rb") as fh:
            for want in (min(remaining, max_bytes), remaining):  # retry whole if one frame > max_bytes
                fh.seek(offset)
                buf, at = fh.read(want), 0
                while len(records) < max_records and (parsed := _parse(buf, at)) is not None:
                    record, at = parsed
                    records.append(record)
                if records or want == remaining:
                    break
        return records, at

    def commit(self, position: Position) -> None:
        """Forget everything before `position` (delivered); ignores positions already passed or dropped."""
        with self._lock:
            if self._find(position.segment) is None or (position.segment, position.offset) <= (
                self._read.segment,
                self._read.offset,
            ):
                return
            self._read = position
            self._skip_finished()
            self._save_cursor()

    def _save_cursor(self) -> None:
        tmp = self.dir / (_CURSOR + ".tmp")
        tmp.write_text(json.dumps(self._read._asdict()))
        os.replace(tmp, self.dir / _CURSOR)

    def close(self) -> None:
        with self._lock:
            self._close_writer()
            self._save_cursor()
