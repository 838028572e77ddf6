"""collectors/btf.py: a hand-built BTF blob everywhere, and the running kernel's BTF against bpftool."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from collectors import btf


def _blob(types: list[bytes], names: list[str]) -> bytes:
    strings = b"\0" + b"".join(n.encode() + b"\0" for n in names)
    type_section = b"".join(types)
    header = struct.pack("<HBBIIIII", btf.BTF_MAGIC, 1, 0, 24, 0, len(type_section),
                         len(type_section), len(strings))
    return header + type_section + strings


def _off(names: list[str], name: str) -> int:
    return 1 + sum(len(n) + 1 for n in names[: names.index(name)])


def _type(name_off: int, kind: int, vlen: int, size: int, kflag: bool = False) -> bytes:
    return struct.pack("<III", name_off, (kflag << 31) | (kind << 24) | vlen, size)


def synthetic() -> btf.BTF:
    """u64; const u64; anon union { u64 inner; }; struct outer { u64 a; u32 bits:3; <anon> ; const u64 c; }"""
    names = ["u64", "inner", "outer", "a", "bits", "c"]
    n = {name: _off(names, name) for name in names}
    types = [
        _type(n["u64"], btf.KIND_INT, 0, 8) + struct.pack("<I", 64),                  # 1
        _type(0, btf.KIND_CONST, 0, 1),                                                # 2 -> 1
        _type(0, btf.KIND_UNION, 1, 8) + struct.pack("<III", n["inner"], 1, 0),        # 3
        _type(n["outer"], btf.KIND_STRUCT, 4, 32, kflag=True)
        + struct.pack("<III", n["a"], 1, 0)
        + struct.pack("<III", n["bits"], 1, (3 << 24) | 64)                             # bitfield: size 3
        + struct.pack("<III", 0, 3, 128)
        + struct.pack("<III", n["c"], 2, 192),                                         # 4
    ]
    return btf.BTF(_blob(types, names))


def test_members_of_synthetic_struct() -> None:
    blob = synthetic()
    outer = blob.find("outer")
    assert outer == 4
    assert blob.members(outer) == [("a", 1, 0), ("bits", 1, 64), ("", 3, 128), ("c", 2, 192)]
    assert btf.member_offsets("outer", ["a", "inner", "c"], blob) == {"a": 0, "inner": 16, "c": 24}
    assert blob.resolve(2) == 1


def test_errors_name_what_is_wrong() -> None:
    blob = synthetic()
    with pytest.raises(btf.BTFError, match="not found"):
        blob.find("tcp_sock")
    with pytest.raises(btf.BTFError, match="no member 'nope'"):
        btf.member_offsets("outer", ["nope"], blob)
    with pytest.raises(btf.BTFError, match="bitfield"):
        btf.member_offsets("outer", ["bits"], synthetic_bitfield_at(3))
    with pytest.raises(btf.BTFError, match="magic"):
        btf.BTF(b"\0" * 32)
    with pytest.raises(btf.BTFError, match="cannot read"):
        btf.BTF.load("/nonexistent/vmlinux")


def synthetic_bitfield_at(bit: int) -> btf.BTF:
    names = ["u64", "outer", "bits"]
    n = {name: _off(names, name) for name in names}
    types = [
        _type(n["u64"], btf.KIND_INT, 0, 8) + struct.pack("<I", 64),
        _type(n["outer"], btf.KIND_STRUCT, 1, 8, kflag=True)
        + struct.pack("<III", n["bits"], 1, (1 << 24) | bit),
    ]
    return btf.BTF(_blob(types, names))


STRUCT_LINE = re.compile(r"^\[(\d+)\] STRUCT '([^']+)' size=\d+ vlen=(\d+)$")
MEMBER_LINE = re.compile(r"^\s+'([^']*)' type_id=(\d+) bits_offset=(\d+)")


def bpftool_structs(wanted: set[str]) -> dict[str, list[tuple[str, int, int]]]:
    """First definition of each wanted struct, as `bpftool btf dump ... format raw` prints it."""
    out = subprocess.run(["bpftool", "btf", "dump", "file", str(btf.VMLINUX), "format", "raw"],
                         capture_output=True, text=True, check=True).stdout
    found: dict[str, list[tuple[str, int, int]]] = {}
    current: list[tuple[str, int, int]] | None = None
    for line in out.splitlines():
        head = STRUCT_LINE.match(line)
        if head:
            current = found.setdefault(head[2], []) if head[2] in wanted and head[2] not in found else None
            continue
        member = MEMBER_LINE.match(line)
        if member and current is not None:
            name = "" if member[1] == "(anon)" else member[1]
            current.append((name, int(member[2]), int(member[3])))
        elif not member:
            current = None
    return found


@pytest.mark.skipif(not btf.VMLINUX.exists() or not shutil.which("bpftool"),
                    reason="needs /sys/kernel/btf/vmlinux and bpftool")
def test_running_kernel_matches_bpftool() -> None:
    structs = {"tcp_sock", "sock", "sock_common", "inet_sock", "task_struct"}
    expected = bpftool_structs(structs)
    assert set(expected) == structs
    kernel = btf.BTF.load()
    for name in structs:
        assert kernel.members(kernel.find(name)) == expected[name], name
    acked = next(bits for member, _t, bits in expected["tcp_sock"] if member == "bytes_acked")
    received = next(bits for member, _t, bits in expected["tcp_sock"] if member == "bytes_received")
    offsets = btf.member_offsets("tcp_sock", ["bytes_acked", "bytes_received"])
    assert offsets == {"bytes_acked": acked // 8, "bytes_received": received // 8}
    # members inside sock_common's anonymous unions/structs (a layout every BPF tool relies on)
    nested = btf.member_offsets("sock_common", ["skc_daddr", "skc_rcv_saddr", "skc_dport", "skc_num"], kernel)
    assert nested == {"skc_daddr": 0, "skc_rcv_saddr": 4, "skc_dport": 12, "skc_num": 14}


def test_vmlinux_path_is_the_kernel_one() -> None:
    assert Path("/sys/kernel/btf/vmlinux") == btf.VMLINUX
