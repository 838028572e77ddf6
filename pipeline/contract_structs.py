"""The contract's kinds as msgspec Structs: the same types, choices, bounds and name grammars as
pipeline/events.py (which stays standard-library only), checked in C.

One generator for the two fast paths: the loader's and the weigh worker's decoding
(pipeline/fastdecode.py) and the sink's encoding (collectors/encoding.py). Each keeps the contract
as the judge for whatever msgspec refuses; tests/unit/test_fastdecode.py and test_encoding.py hold
both paths to the contract's verdicts and values.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Literal

import msgspec

from pipeline import events

_FLOAT_MAX = sys.float_info.max  # bounds every float: inf and NaN fail, as in events.validate


def _annotation(field: events.Field, grammars: bool) -> Any:
    if field.choices:
        return Literal[field.choices]  # type: ignore[valid-type]
    if field.type is str:
        named = grammars and field.grammar is not None
        pattern = f"^{events.full_pattern(field)}\\Z" if named else None  # \Z: no "\n" slips
        return Annotated[str, msgspec.Meta(max_length=field.max_len, pattern=pattern)]
    low, high = field.minimum, field.maximum
    if field.type is float:
        low = -_FLOAT_MAX if low is None else low
        high = _FLOAT_MAX if high is None else high
    return Annotated[field.type, msgspec.Meta(ge=low, le=high)]


def contract_struct(kind: str, forbid_unknown_fields: bool, only: tuple[str, ...] | None = None,
                    grammars: bool = True) -> type[msgspec.Struct]:
    """A Struct of `kind`'s contract fields (or of those named in `only`) in the contract's order, optional
    ones with their defaults. grammars=False leaves the name grammars to the caller (the loader checks
    each distinct name once, pipeline/fastdecode.py): the regular expressions are half of msgspec's time."""
    fields = [(f.name, _annotation(f, grammars)) if f.required else (f.name, _annotation(f, grammars), f.default)
              for f in events.SCHEMAS[kind] if only is None or f.name in only]
    # kw_only: optional contract fields may sit between required ones (workload after cgroup), order kept
    return msgspec.defstruct(f"{kind.title()}Event", fields, forbid_unknown_fields=forbid_unknown_fields,
                             gc=False, kw_only=True)
