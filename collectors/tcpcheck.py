"""The contract checks a decoded `tcp` event still needs, run once per read instead of once per event.

collectors/tcpevent.py's decode_batch builds most fields where the contract cannot be broken: pid,
ports, srtt_us, retransmits and the reset counts are u16/u32 kernel values inside the contract's
ranges; durations are u64 / 1e6 (finite, >= 0); role and outcome come from the contract's choices;
addresses from inet_ntop and comm from 16 kernel bytes stay within their lengths; v is the contract's
version. What is left can break it, and is checked here over a whole read:
  - ts_ms (kernel clock + wall offset), tx_bytes and rx_bytes (u64: the contract stops at 2**63 - 1),
    family (a byte): min / max / set over the read, loops in C;
  - host, cgroup, workload and workload_kind (from the node: settings, /sys, Kubernetes): through the
    contract's msgspec Struct (collectors/encoding.py's checks in C), once per distinct combination,
    remembered (a read names a few).
`read_host(events)` returns the one host of a read that passes; on None the caller checks each event
with the contract, which rejects exactly the bad ones with its reason. tests/ebpf/test_tcp_batches.py
holds the guarantee: no decoded record passes here that the contract rejects.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import msgspec

from pipeline import events
from pipeline.contract_structs import contract_struct

_FIELDS = {field.name: field for field in events.SCHEMAS["tcp"]}
RANGED = ("ts_ms", "tx_bytes", "rx_bytes", "family")  # numbers decode_batch does not keep in range by construction
NAMED = ("host", "cgroup", "workload", "workload_kind")  # text from the node, not from the kernel record
_GETTERS = tuple((operator.attrgetter(name), _FIELDS[name]) for name in RANGED)
_NAMES = operator.attrgetter(*NAMED)
_NAMES_STRUCT = contract_struct("tcp", forbid_unknown_fields=True, only=NAMED)
_ACCEPTED_MAX = 4096


class ReadCheck:
    """Checks whole reads; remembers the name combinations the contract accepted (bounded)."""

    def __init__(self) -> None:
        self._accepted: set[tuple[str, ...]] = set()

    def read_host(self, decoded: Sequence[Any]) -> str | None:
        """The host every event of `decoded` names, when every event passes the contract's checks that
        decode_batch leaves open; None when one may not (or the read names several hosts)."""
        if not decoded or not all(_in_range(getter, field, decoded) for getter, field in _GETTERS):
            return None
        combos = set(map(_NAMES, decoded))
        if not combos <= self._accepted:
            if not all(map(_names_pass, combos - self._accepted)):
                return None
            if len(self._accepted) >= _ACCEPTED_MAX:
                self._accepted.clear()
            self._accepted |= combos
        hosts = {combo[0] for combo in combos}
        return hosts.pop() if len(hosts) == 1 else None


def _in_range(getter: operator.attrgetter[Any], field: events.Field, decoded: Sequence[Any]) -> bool:
    values = list(map(getter, decoded))
    if field.choices:
        return set(values) <= set(field.choices)
    return ((field.minimum is None or min(values) >= field.minimum)
            and (field.maximum is None or max(values) <= field.maximum))


def _names_pass(combo: tuple[str, ...]) -> bool:
    try:
        msgspec.convert(dict(zip(NAMED, combo, strict=True)), _NAMES_STRUCT)
    except msgspec.ValidationError:
        return False
    return True
