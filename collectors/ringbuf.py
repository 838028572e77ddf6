"""A BPF ring buffer read straight from its memory: every committed record as one batch, no callback.

libbpf's ring_buffer__consume (what bcc's ring_buffer_consume runs) calls back into Python once per
record through ctypes, which cost the collector more than decoding the record. This reader maps the
ring the way libbpf does (kernel/bpf/ringbuf.c): a consumer page it writes, then a producer page and
the data pages, which the kernel maps twice in a row so a span that wraps around the end reads as one.
Each record is an 8-byte header (length with the BUSY and DISCARD bits, page offset) and the sample,
8-byte aligned. `read()` copies everything between the consumer and producer positions, keeps the
records up to the first one still being written (BUSY), drops discarded ones, and moves the consumer
position past what it took, which gives that space back to the kernel.

Ordering: the kernel reserves a record (advancing the producer position) with BUSY set, writes the
sample, then clears BUSY; libbpf reads positions and headers with acquire loads. Here the positions,
each copy and the consumer update sit in separate lock round trips (a release then an acquire between
any two of them, which orders them on weakly ordered CPUs too), and the span is copied twice: once
to find how far the records are committed, then again up to there (see `read`).
Pure apart from `RingReader`'s mmap: `committed()` is tested on bytes.
"""

from __future__ import annotations

import mmap
import struct
import threading

HEADER = 8
BUSY, DISCARD = 1 << 31, 1 << 30
_HEADER = struct.Struct("<I4x")


class RingError(RuntimeError):
    """The ring holds a record the reader cannot take (a size other than the one event size)."""


def committed(span: bytes, sample_size: int) -> tuple[bytes, int]:
    """(the committed, kept records of `span` back to back, header included, bytes to consume).

    `span` starts at a record; every sample is `sample_size` bytes. The common case, every record
    committed and kept, costs one C-level count over the headers."""
    stride = HEADER + (-(-sample_size // 8) * 8)
    if len(span) % stride == 0:
        lengths = memoryview(span).cast("I")[::stride // 4]
        if lengths.tolist().count(sample_size) == len(lengths):
            return span, len(span)
    kept, at = [], 0
    while at + HEADER <= len(span):
        (length,) = _HEADER.unpack_from(span, at)
        if length & BUSY:
            break  # still being written: it and everything after it wait for the next read
        size = length & ~(BUSY | DISCARD)
        end = at + HEADER + (-(-size // 8) * 8)
        if not length & DISCARD:
            if size != sample_size:
                raise RingError(f"ring record of {size} bytes, expected {sample_size}")
            kept.append(span[at:end])
        at = end
    return b"".join(kept), at


class RingReader:
    """The ring buffer map behind `map_fd` (`data_size` bytes of data, a power of two), read in batches."""

    def __init__(self, map_fd: int, data_size: int, sample_size: int) -> None:
        page = mmap.PAGESIZE
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._producer = mmap.mmap(map_fd, page + 2 * data_size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        # Positions as native 8-byte words: one aligned load or store each (struct's "<Q" goes byte by
        # byte, so the kernel could see a consumer position half written, or we a producer one).
        self._consumer_pos = memoryview(self._consumer).cast("Q")
        self._producer_pos = memoryview(self._producer).cast("Q")
        self._data_at, self._mask, self.sample_size = page, data_size - 1, sample_size
        self._barrier = threading.Lock()

    def read(self) -> bytes:
        """Every record committed since the last read, headers included, back to back (b"" if none)."""
        with self._barrier:
            consumer, producer = self._consumer_pos[0], self._producer_pos[0]
        if producer == consumer:
            return b""
        _records, taken = committed(self._copy(consumer, producer - consumer), self.sample_size)
        if not taken:
            return b""
        # Copied again: one copy need not read a record's header before its sample (memcpy may load
        # the end first), so a sample read just before its record was committed could be stale. Every
        # record up to `taken` was seen committed above, and a copy made after that reads its final bytes.
        records, taken = committed(self._copy(consumer, taken), self.sample_size)
        with self._barrier:  # the data is copied before the kernel may reuse its space
            self._consumer_pos[0] = consumer + taken
        return records

    def _copy(self, consumer: int, size: int) -> bytes:
        with self._barrier:  # a release then an acquire: loads before it stay before the loads in it
            start = self._data_at + (consumer & self._mask)
            return self._producer[start:start + size]

    def close(self) -> None:
        self._consumer_pos.release()
        self._producer_pos.release()
        self._consumer.close()
        self._producer.close()
