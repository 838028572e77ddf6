"""A small reader of kernel BTF (/sys/kernel/btf/vmlinux): struct member offsets on the RUNNING kernel.

bcc compiles against the installed kernel headers, which may belong to another kernel (Debian 12 ships
6.1 headers; on 6.18 offsetof(struct tcp_sock, bytes_acked) is 1824, not 1496). The kernel's own BTF
describes the structs it was built with, so offsets read here are the ones the BPF program must use.
Format: Documentation/bpf/btf.rst (header, type section, string section; little-endian on x86).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")
BTF_MAGIC = 0xEB9F

KIND_INT, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 3, 4, 5, 6
KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG = 8, 9, 10, 11, 18
KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC, KIND_DECL_TAG, KIND_ENUM64 = 13, 14, 15, 17, 19

# Bytes that follow the 12-byte common header of each kind: (fixed, per vlen item).
_EXTRA: dict[int, tuple[int, int]] = {
    KIND_INT: (4, 0),
    KIND_ARRAY: (12, 0),
    KIND_STRUCT: (0, 12),
    KIND_UNION: (0, 12),
    KIND_ENUM: (0, 8),
    KIND_FUNC_PROTO: (0, 8),
    KIND_VAR: (4, 0),
    KIND_DATASEC: (0, 12),
    KIND_DECL_TAG: (4, 0),
    KIND_ENUM64: (0, 12),
}
_MODIFIERS = {KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG}


class BTFError(RuntimeError):
    """The BTF blob is missing, malformed, or lacks the struct or member asked for."""


class BTF:
    """Type table of one BTF blob; types are decoded lazily, only their positions are indexed."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 24:
            raise BTFError("BTF blob too short")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != BTF_MAGIC:
            raise BTFError(f"bad BTF magic {magic:#x} (big-endian BTF is not supported)")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self._data = data
        self._types_start = hdr_len + type_off
        self._types_end = self._types_start + type_len
        self._strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
        self._offsets = self._index()

    @classmethod
    def load(cls, path: Path | str = VMLINUX) -> BTF:
        try:
            return cls(Path(path).read_bytes())
        except OSError as err:
            raise BTFError(f"cannot read BTF from {path}: {err.strerror}") from None

    def _index(self) -> list[int]:
        """File offset of every type record; position i holds type id i (id 0 is void)."""
        offsets, pos, data = [0], self._types_start, self._data
        while pos < self._types_end:
            offsets.append(pos)
            info = struct.unpack_from("<I", data, pos + 4)[0]
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            fixed, per_item = _EXTRA.get(kind, (0, 0))
            pos += 12 + fixed + per_item * vlen
        if pos != self._types_end:
            raise BTFError("BTF type section does not end on a record boundary")
        return offsets

    def name(self, name_off: int) -> str:
        end = self._strings.index(b"\0", name_off)
        return self._strings[name_off:end].decode()

    def header(self, type_id: int) -> tuple[str, int, int, bool, int]:
        """(name, kind, vlen, kind_flag, size_or_type) of a type id."""
        name_off, info, size_or_type = struct.unpack_from("<III", self._data, self._offsets[type_id])
        return self.name(name_off), (info >> 24) & 0x1F, info & 0xFFFF, bool(info >> 31), size_or_type

    def find(self, name: str, kind: int = KIND_STRUCT) -> int:
        """Type id of the first type of that kind and name."""
        wanted = name.encode()
        for type_id in range(1, len(self._offsets)):
            name_off, info = struct.unpack_from("<II", self._data, self._offsets[type_id])
            if (info >> 24) & 0x1F == kind and self._strings.startswith(wanted + b"\0", name_off):
                return type_id
        raise BTFError(f"type '{name}' not found in BTF")

    def members(self, type_id: int) -> list[tuple[str, int, int]]:
        """(name, member type id, bit offset) of each member of a struct or union."""
        _name, kind, vlen, kflag, _size = self.header(type_id)
        if kind not in (KIND_STRUCT, KIND_UNION):
            raise BTFError(f"type {type_id} is not a struct or union")
        result, pos = [], self._offsets[type_id] + 12
        for _ in range(vlen):
            name_off, member_type, offset = struct.unpack_from("<III", self._data, pos)
            # With kind_flag the top 8 bits hold a bitfield size; the bit offset is the low 24.
            result.append((self.name(name_off), member_type, offset & 0xFFFFFF if kflag else offset))
            pos += 12
        return result

    def resolve(self, type_id: int) -> int:
        """Strip typedefs and qualifiers (const, volatile, ...) off a type id."""
        while type_id and self.header(type_id)[1] in _MODIFIERS:
            type_id = self.header(type_id)[4]
        return type_id

    def member_bit_offset(self, type_id: int, member: str) -> int | None:
        """Bit offset of a member, looking inside anonymous structs/unions too."""
        for name, member_type, bits in self.members(type_id):
            if name == member:
                return bits
            inner = self.resolve(member_type)
            if not name and inner and self.header(inner)[1] in (KIND_STRUCT, KIND_UNION):
                found = self.member_bit_offset(inner, member)
                if found is not None:
                    return bits + found
        return None


def member_offsets(struct_name: str, members: Iterable[str], btf: BTF | None = None) -> dict[str, int]:
    """Byte offsets of `members` in `struct struct_name` on the running kernel (or in `btf`)."""
    btf = btf or BTF.load()
    type_id = btf.find(struct_name)
    offsets: dict[str, int] = {}
    for member in members:
        bits = btf.member_bit_offset(type_id, member)
        if bits is None:
            raise BTFError(f"struct {struct_name} has no member '{member}'")
        if bits % 8:
            raise BTFError(f"{struct_name}.{member} is a bitfield (bit offset {bits})")
        offsets[member] = bits // 8
    return offsets
