"""The loader's fast path: decode and validate a message in C (msgspec), straight to its row.

An accelerator, never a second judge: msgspec Structs are generated from the contract (events.SCHEMAS:
types, ranges, choices, lengths, name grammars), so a message msgspec accepts is one events.validate
accepts with the same values. Anything it does not accept — an error, an unknown extra field, a
message over the size limit — returns None and goes to the one judge (transform.judge), which
decides and words the reason. Unknown fields are refused here on purpose: the judge's JSON parser
(orjson) refuses some JSON that msgspec only skips (a number that overflows a double), so skipped
content must never be accepted on this path. tests/unit/test_fastdecode.py checks the equivalence.
"""

from __future__ import annotations

from typing import Any

import msgspec

from pipeline import events
from pipeline.contract_structs import contract_struct

_DECODERS = {kind: msgspec.json.Decoder(contract_struct(kind, forbid_unknown_fields=True))
             for kind in ("tcp", "rpc", "load")}
_TS = [f.name for f in events.SCHEMAS["rpc"]].index("ts_ms")  # the same position in every kind


def contract_event(kind: str, raw: bytes) -> events.Event | None:
    """The validated event (every contract field, defaults filled) when the fast path can vouch for it;
    else None, and the caller asks the judge. The weigh worker counts every rpc event this way."""
    if len(raw) > events.MAX_MESSAGE_BYTES:
        return None
    try:
        return msgspec.structs.asdict(_DECODERS[kind].decode(raw))
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None


def contract_values(kind: str, raw: bytes, window: events.TimeWindow | None) -> tuple[Any, ...] | None:
    """The contract's field values in order, when the fast path can vouch for them; else None."""
    if len(raw) > events.MAX_MESSAGE_BYTES:
        return None
    try:
        values = msgspec.structs.astuple(_DECODERS[kind].decode(raw))
    except (msgspec.MsgspecError, ValueError, RecursionError):  # e.g. invalid UTF-8 raises UnicodeDecodeError
        return None
    if window is not None and not window[0] <= values[_TS] <= window[1]:
        return None
    return values
