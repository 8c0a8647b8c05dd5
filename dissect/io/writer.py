"""Capture writers: pcap (µs or ns, either byte order) and pcapng (either byte order,
several interfaces, enhanced / simple / obsolete packet blocks), optionally gzip-compressed.

Used by crafting, the lab, and tests that rewrite a real capture into every format.
Output files are never overwritten unless ``force`` is given.
"""

from __future__ import annotations

import gzip
import os
import struct

from dissect.errors import RefusedError


def _open_out(path: str, force: bool, compress: bool):
    if os.path.exists(path) and not force:
        raise RefusedError(f"{path} exists; use --force to overwrite it")
    f = open(path, "wb")
    return gzip.GzipFile(fileobj=f, mode="wb", mtime=0) if compress else f, f


class PcapWriter:
    def __init__(self, path: str, linktype: int = 1, *, nanosecond: bool = False,
                 big_endian: bool = False, snaplen: int = 262144, force: bool = False,
                 compress: bool = False):
        self.o = ">" if big_endian else "<"
        self.ns = nanosecond
        self.f, self._raw = _open_out(path, force, compress)
        magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
        self.f.write(struct.pack(self.o + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))

    def write(self, ts: float, data: bytes, wirelen: int | None = None) -> None:
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if self.ns else 1e6))
        if frac >= (10**9 if self.ns else 10**6):
            sec, frac = sec + 1, 0
        self.f.write(struct.pack(self.o + "IIII", sec, frac, len(data),
                                 wirelen if wirelen is not None else len(data)))
        self.f.write(data)

    def close(self) -> None:
        self.f.close()
        if self._raw is not self.f:
            self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *e):
        self.close()


class PcapngWriter:
    """Interfaces are added with :meth:`interface` (returns its id) before packets use them."""

    def __init__(self, path: str, *, big_endian: bool = False, force: bool = False,
                 compress: bool = False):
        self.o = ">" if big_endian else "<"
        self.f, self._raw = _open_out(path, force, compress)
        self.ifaces: list[tuple[int, int]] = []   # (linktype, tsresol exponent)
        body = struct.pack(self.o + "IHHq", 0x1A2B3C4D, 1, 0, -1)
        self._block(0x0A0D0D0A, body)

    def _block(self, btype: int, body: bytes) -> None:
        pad = (-len(body)) % 4
        blen = 12 + len(body) + pad
        self.f.write(struct.pack(self.o + "II", btype, blen) + body + b"\0" * pad +
                     struct.pack(self.o + "I", blen))

    def _opt(self, code: int, val: bytes) -> bytes:
        return struct.pack(self.o + "HH", code, len(val)) + val + b"\0" * ((-len(val)) % 4)

    def interface(self, linktype: int, *, tsresol: int = 6, snaplen: int = 262144,
                  name: str | None = None) -> int:
        opts = b""
        if name:
            opts += self._opt(2, name.encode())
        if tsresol != 6:
            opts += self._opt(9, bytes([tsresol]))
        if opts:
            opts += self._opt(0, b"")
        self._block(1, struct.pack(self.o + "HHI", linktype, 0, snaplen) + opts)
        self.ifaces.append((linktype, tsresol))
        return len(self.ifaces) - 1

    def _ticks(self, iface: int, ts: float) -> int:
        res = self.ifaces[iface][1]
        sec = int(ts)
        return sec * 10**res + round((ts - sec) * 10**res)

    def write(self, ts: float, data: bytes, iface: int = 0, wirelen: int | None = None,
              block: str = "epb") -> None:
        wl = wirelen if wirelen is not None else len(data)
        if block == "spb":
            self._block(3, struct.pack(self.o + "I", wl) + data)
            return
        t = self._ticks(iface, ts)
        if block == "opb":
            self._block(2, struct.pack(self.o + "HHIIII", iface, 0, t >> 32, t & 0xFFFFFFFF,
                                       len(data), wl) + data)
            return
        self._block(6, struct.pack(self.o + "IIIII", iface, t >> 32, t & 0xFFFFFFFF,
                                   len(data), wl) + data)

    def close(self) -> None:
        self.f.close()
        if self._raw is not self.f:
            self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *e):
        self.close()
