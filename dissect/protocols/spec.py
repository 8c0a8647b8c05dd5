"""Headers declared as data: a table of fields, read by one generic decoder.

Each protocol module declares ``HEADER = (F(...), ...)``: name (Wireshark's field name
within the protocol where one exists, so ``ip`` + ``src`` = tshark's ``ip.src``), byte offset
in the header, wire format, optional bit mask, and a one-line doc that the README's field
reference is generated from. The OSI layer is not declared here: it comes from
:mod:`dissect.osi`, decided once per protocol.
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

from dissect.protocols.base import Layer

_FMT = {"B": (1, struct.Struct("!B")), "H": (2, struct.Struct("!H")),
        "I": (4, struct.Struct("!I")), "Q": (8, struct.Struct("!Q")),
        "<H": (2, struct.Struct("<H")), "<I": (4, struct.Struct("<I"))}


class F(NamedTuple):
    name: str
    off: int
    fmt: str          # B H I Q <H <I mac ip4 ip6 hex:N
    mask: int = 0     # bit field within the unsigned word
    doc: str = ""


def size_of(fmt: str) -> int:
    if fmt in _FMT:
        return _FMT[fmt][0]
    if fmt == "mac":
        return 6
    if fmt == "ip4":
        return 4
    if fmt == "ip6":
        return 16
    if fmt.startswith("hex:"):
        return int(fmt[4:])
    raise ValueError(fmt)


def header_len(spec) -> int:
    return max(f.off + size_of(f.fmt) for f in spec)


def mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def read(spec, data: bytes, start: int, layer: Layer, base: int = 0) -> bool:
    """Decode every field of ``spec`` from ``data[start:]`` into ``layer``.

    ``base`` is added to offsets so they are frame offsets. Fields that do not fit in
    the captured bytes are left out and the layer gets a ``truncated`` anomaly; returns
    whether the whole header was present.
    """
    n = len(data)
    complete = True
    for f in spec:
        size = size_of(f.fmt)
        at = start + f.off
        if at + size > n:
            complete = False
            continue
        fmt = f.fmt
        if fmt in _FMT:
            v = _FMT[fmt][1].unpack_from(data, at)[0]
            if f.mask:
                m = f.mask
                v = (v & m) >> ((m & -m).bit_length() - 1)
        elif fmt == "mac":
            v = mac(data[at:at + 6])
        elif fmt == "ip4":
            v = socket.inet_ntop(socket.AF_INET, data[at:at + 4])
        elif fmt == "ip6":
            v = socket.inet_ntop(socket.AF_INET6, data[at:at + 16])
        else:
            v = data[at:at + size].hex()
        layer.add(f.name, v, base + at, size, f.doc)
    if not complete:
        layer.anomalies.append(f"{layer.protocol}-truncated")
    return complete
