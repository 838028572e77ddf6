"""The loader's fast path: decode and validate messages in C (msgspec), straight to their rows.

An accelerator, never a second judge: msgspec Structs are generated from the contract (events.SCHEMAS:
types, ranges, choices, lengths, name grammars), so a message msgspec accepts is one events.validate
accepts with the same values. Anything it does not accept — an error, an unknown extra field, a
message over the size limit — returns None and goes to the one judge (transform.judge), which
decides and words the reason. Unknown fields are refused here on purpose: the judge's JSON parser
(orjson) refuses some JSON that msgspec only skips (a number that overflows a double), so skipped
content must never be accepted on this path. tests/unit/test_fastdecode.py checks the equivalence.

The loader's Structs leave out the name grammars: their regular expressions were half of msgspec's
time, and names repeat (a few services, interfaces and hosts in thousands of events). `_Names` checks
each distinct name once with the contract's own expression and remembers the ones that passed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import Any

import msgspec

from pipeline import events
from pipeline.contract_structs import contract_struct

KINDS = ("tcp", "rpc", "load")
_DECODERS = {kind: msgspec.json.Decoder(contract_struct(kind, forbid_unknown_fields=True)) for kind in KINDS}
_TS = [f.name for f in events.SCHEMAS["rpc"]].index("ts_ms")  # the same position in every kind
_TS_OF, _WORKLOAD_OF = attrgetter("ts_ms"), attrgetter("workload")
_DECODE_ERRORS = (msgspec.MsgspecError, ValueError, RecursionError)  # invalid UTF-8 raises UnicodeDecodeError
_astuple = msgspec.structs.astuple


class _Names:
    """A kind's name fields: position, the contract's full-match expression, and the values seen valid."""

    LIMIT = 65_536  # distinct valid names kept per field; past it the memory starts again (still correct)

    def __init__(self, kind: str) -> None:
        self.fields = [(i, re.compile(events.full_pattern(f)).fullmatch, set[str]())
                       for i, f in enumerate(events.SCHEMAS[kind]) if f.type is str and f.grammar is not None]
        self.getters = {i: attrgetter(events.SCHEMAS[kind][i].name) for i, _, _ in self.fields}

    def valid(self, values_of: Callable[[int], Iterable[Any]]) -> bool:
        """Every name (the values of contract field i: `values_of(i)`) follows its grammar."""
        for i, matches, known in self.fields:
            fresh = set(values_of(i)).difference(known)
            if fresh:
                if not all(map(matches, fresh)):
                    return False
                if len(known) + len(fresh) > self.LIMIT:
                    known.clear()
                known.update(fresh)
        return True


_LOOSE = {kind: msgspec.json.Decoder(contract_struct(kind, forbid_unknown_fields=True, grammars=False))
          for kind in KINDS}
_NAMES = {kind: _Names(kind) for kind in KINDS}


def contract_event(kind: str, raw: bytes) -> events.Event | None:
    """The validated event (every contract field, defaults filled) when the fast path can vouch for it;
    else None, and the caller asks the judge. The weigh worker counts every rpc event this way."""
    if len(raw) > events.MAX_MESSAGE_BYTES:
        return None
    try:
        return msgspec.structs.asdict(_DECODERS[kind].decode(raw))
    except _DECODE_ERRORS:
        return None


def contract_values(kind: str, raw: bytes, window: events.TimeWindow | None) -> tuple[Any, ...] | None:
    """The contract's field values in order, when the fast path can vouch for them; else None."""
    columns = contract_columns(kind, [raw], window)
    return None if columns is None else tuple(column[0] for column in columns)


Columns = list[tuple[Any, ...]]  # one tuple per contract field, in contract order


def contract_columns(kind: str, raws: Sequence[bytes], window: events.TimeWindow | None) -> Columns | None:
    """The contract's fields of all `raws` as columns, when the fast path can vouch for every message;
    else None, and the caller takes them one by one."""
    if not raws or max(map(len, raws)) > events.MAX_MESSAGE_BYTES:
        return None
    try:
        columns = list(zip(*map(_astuple, map(_LOOSE[kind].decode, raws)), strict=True))
    except _DECODE_ERRORS:
        return None
    if not _NAMES[kind].valid(columns.__getitem__) or not _within(columns[_TS], window):
        return None
    return columns


def contract_times(kind: str, raws: Sequence[bytes], window: events.TimeWindow | None) -> list[int] | None:
    """The ts_ms of all `raws` when the fast path vouches for every message and each names its workload
    (the raw bytes are then what the table gets: no derived field to add); else None. The same checks as
    contract_columns, without building columns (the JSON-lines inserts send the bytes)."""
    if not raws or max(map(len, raws)) > events.MAX_MESSAGE_BYTES:
        return None
    try:
        decoded = list(map(_LOOSE[kind].decode, raws))
    except _DECODE_ERRORS:
        return None
    names = _NAMES[kind]
    times = list(map(_TS_OF, decoded))
    if not names.valid(lambda i: map(names.getters[i], decoded)) or not _within(times, window):
        return None
    return None if "" in map(_WORKLOAD_OF, decoded) else times


def _within(times: Sequence[int], window: events.TimeWindow | None) -> bool:
    return window is None or (window[0] <= min(times) and max(times) <= window[1])
