"""Capture readers: pcap (µs/ns, either byte order), pcapng (any number of interfaces,
either byte order, enhanced/simple/obsolete packet blocks), each optionally gzip-compressed.

The format is detected from the magic number, never from the file name. Reading is a
stream: uncompressed files are memory-mapped (their pages are page cache, not our
memory) and compressed ones are read through a bounded buffer, so memory does not grow
with the file. Frames are yielded in file order, numbered from 1 like tshark's
``frame.number``.

Damage part-way through raises :class:`~dissect.errors.DamagedCaptureError` *after* every
frame before it has been yielded; the error names the file, the frame and the reason.
"""

from __future__ import annotations

import gzip
import io
import mmap
import os
import struct
import zlib
from typing import Iterator, NamedTuple

import dissect.tuples as _tuples

from dissect.errors import (CaptureIOError, DamagedCaptureError, NotACaptureError,
                            UnsupportedError)

# Largest record we accept. Wireshark's own limit for ordinary link types
# (WTAP_MAX_PACKET_SIZE_STANDARD); a larger caplen is a corrupt length field, and
# trusting it would make us read (or allocate) arbitrary amounts.
MAX_CAPLEN = 262_144

# Largest pcapng block we accept: a packet block of MAX_CAPLEN plus generous room for
# options. Blocks claiming more are corrupt (or hostile) and stop the read.
MAX_BLOCK_LEN = 16 * 1024 * 1024

# A gzip member expanding more than this ratio over the compressed bytes read so far
# is treated as a decompression bomb (real captures compress 2-20x).
MAX_GZIP_RATIO = 1000
# ... but only once at least this much has been produced (small files can have odd ratios).
GZIP_RATIO_MIN_OUTPUT = 64 * 1024 * 1024

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),   # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),   # big-endian, microseconds
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),   # little-endian, nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),   # big-endian, nanoseconds
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"

LINKTYPE_NAMES = {
    0: "null", 1: "ethernet", 12: "raw", 14: "raw", 101: "raw", 108: "loop",
    113: "linux-sll", 192: "ppi", 228: "ipv4", 229: "ipv6", 276: "linux-sll2",
}


class Frame(NamedTuple):
    number: int       # 1-based, file order
    ts: float         # epoch seconds
    caplen: int       # bytes captured
    wirelen: int      # bytes on the wire
    linktype: int
    iface: int        # interface index (pcapng), 0 for pcap
    data: bytes



class CaptureInfo:
    """Facts about the file, filled while reading (interfaces appear as they are read)."""

    def __init__(self, path: str, fmt: str, compressed: bool):
        self.path = path
        self.format = fmt               # "pcap" or "pcapng"
        self.compressed = compressed
        self.byte_order = "<"
        self.resolution = 1e-6          # pcap only
        self.snaplen = 0
        self.interfaces: list[dict] = []  # {"linktype", "snaplen", "tsresol", "name"}

    @property
    def linktypes(self) -> list[int]:
        return sorted({i["linktype"] for i in self.interfaces})

    def to_record(self) -> dict:
        return {
            "path": self.path, "format": self.format, "compressed": self.compressed,
            "byte_order": "little" if self.byte_order == "<" else "big",
            "interfaces": [dict(i) for i in self.interfaces],
        }


# --------------------------------------------------------------------------- sources

class _MmapSource:
    """Random access over a memory-mapped file."""

    def __init__(self, f):
        self._f = f
        size = os.fstat(f.fileno()).st_size
        self.size = size
        self.buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""

    def close(self):
        if isinstance(self.buf, mmap.mmap):
            self.buf.close()
        self._f.close()


class _StreamSource:
    """Sequential reads from a gzip stream with a bounded window.

    Decompresses incrementally with zlib so that a truncated or damaged file still gives
    every byte before the damage (gzip.GzipFile would discard the last chunk)."""

    CHUNK = 1 << 16

    def __init__(self, raw, path: str):
        self._raw = raw
        self._path = path
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.buf = b""
        self.base = 0   # offset (in decompressed bytes) of buf[0]
        self.eof = False
        self.error = None
        self.consumed = 0

    def _more(self) -> None:
        raw = self._raw.read(self.CHUNK)
        if not raw:
            self.eof = True
            if not self._z.eof:
                self.error = "gzip data ends early (the file was truncated)"
            return
        self.consumed += len(raw)
        while raw:
            try:
                out = self._z.decompress(raw)
            except zlib.error as e:
                self.eof = True
                self.error = f"gzip data is damaged ({e})"
                return
            self.buf += out
            raw = self._z.unused_data
            if self._z.eof and raw:     # another gzip member follows
                if raw[:2] != GZIP_MAGIC:
                    raw = b""           # trailing garbage after the last member: ignore
                    break
                self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif self._z.eof:
                break
            else:
                raw = b""

    def ensure(self, end: int) -> bool:
        """Make decompressed offsets < end available; False if the stream ends first."""
        while self.base + len(self.buf) < end and not self.eof:
            self._more()
            produced = self.base + len(self.buf)
            if produced > GZIP_RATIO_MIN_OUTPUT and produced > MAX_GZIP_RATIO * max(self.consumed, 1):
                raise DamagedCaptureError(
                    f"gzip data expands more than {MAX_GZIP_RATIO}x (decompression bomb?)",
                    path=self._path)
        return self.base + len(self.buf) >= end

    def take(self, start: int, end: int) -> bytes:
        return self.buf[start - self.base:end - self.base]

    def release(self, upto: int) -> None:
        """Forget bytes before ``upto`` (keeps memory bounded)."""
        drop = upto - self.base
        if drop > (1 << 20):
            self.buf = self.buf[drop:]
            self.base = upto

    def close(self):
        self._raw.close()


class _Window:
    """Uniform 'bytes at [a, b)' access over either source."""

    def __init__(self, src):
        self.src = src
        self.streaming = isinstance(src, _StreamSource)
        self.error = None

    def get(self, start: int, end: int) -> bytes | None:
        if self.streaming:
            if not self.src.ensure(end):
                self.error = self.src.error
                return None
            return self.src.take(start, end)
        if end > self.src.size:
            return None
        return self.src.buf[start:end]

    def available_from(self, start: int) -> int:
        if self.streaming:
            self.src.ensure(start + 1)
            return max(0, self.src.base + len(self.src.buf) - start)
        return max(0, self.src.size - start)

    def release(self, upto: int) -> None:
        if self.streaming:
            self.src.release(upto)


# --------------------------------------------------------------------------- opening

def _open(path: str):
    try:
        f = open(path, "rb")
    except IsADirectoryError:
        raise CaptureIOError("is a directory, not a capture file", path=path) from None
    except FileNotFoundError:
        raise CaptureIOError("no such file", path=path) from None
    except PermissionError:
        raise CaptureIOError("permission denied", path=path) from None
    except OSError as e:
        raise CaptureIOError(f"cannot open ({e.strerror or e})", path=path) from None
    head = f.read(4)
    f.seek(0)
    if head[:2] == GZIP_MAGIC:
        return _Window(_StreamSource(f, path)), True
    try:
        return _Window(_MmapSource(f)), False
    except (OSError, ValueError) as e:
        f.close()
        raise CaptureIOError(f"cannot map file ({e})", path=path) from None


class CaptureReader:
    """Iterate the frames of one capture file.

    >>> with CaptureReader("pcaps/http-get.pcap") as r:
    ...     for frame in r: ...
    """

    def __init__(self, path: str):
        self.path = str(path)
        self._win, compressed = _open(self.path)
        head = self._win.get(0, 4)
        if head is None:
            n = self._win.available_from(0)
            self.close()
            if n == 0:
                raise NotACaptureError("empty file, not a capture", path=self.path)
            raise NotACaptureError(f"only {n} bytes: too short for a capture file header",
                                   path=self.path)
        if head in PCAP_MAGICS:
            self.info = CaptureInfo(self.path, "pcap", compressed)
        elif head == PCAPNG_SHB:
            self.info = CaptureInfo(self.path, "pcapng", compressed)
        else:
            self.close()
            if head[:2] == GZIP_MAGIC:
                raise NotACaptureError("gzip data that does not contain a capture", path=self.path)
            if head in (b"\xa1\xb2\xcd\x34", b"\x34\xcd\xb2\xa1"):
                raise UnsupportedError("Kuznetzov's modified pcap format is not supported",
                                       path=self.path)
            raise NotACaptureError(
                f"not a pcap or pcapng file (magic number {head.hex()})", path=self.path)
        self.frames_read = 0
        # non-fatal oddities of the file itself: (frame number, anomaly name)
        self.warnings: list[tuple[int, str]] = []
        if self.info.format == "pcap":
            self._iter = self._pcap()
        else:
            self._iter = self._pcapng()
        # Read the file header now so format errors surface at open time.
        self._first = next(self._iter, None)

    # context manager / iteration
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        win = getattr(self, "_win", None)
        if win is not None:
            try:
                win.src.close()
            except Exception:  # closing twice or a half-open source
                pass

    def __iter__(self) -> Iterator[Frame]:
        first = self._first
        if first is None:
            return
        self._first = None
        if first is not _HEADER_DONE:
            yield first
        yield from self._iter

    # ----------------------------------------------------------------- pcap

    def _damaged(self, reason: str, offset: int | None = None) -> DamagedCaptureError:
        return DamagedCaptureError(reason, path=self.path, frame=self.frames_read + 1,
                                   offset=offset)

    def _pcap(self):
        win = self._win
        hdr = win.get(0, 24)
        if hdr is None:
            raise NotACaptureError("truncated pcap file header (less than 24 bytes)",
                                   path=self.path)
        order, res = PCAP_MAGICS[hdr[:4]]
        vmaj, vmin, _zone, _sig, snaplen, lt = struct.unpack(order + "HHiIII", hdr[4:24])
        info = self.info
        info.byte_order, info.resolution, info.snaplen = order, res, snaplen
        linktype = lt & 0x0FFFFFFF & 0xFFFF
        info.interfaces.append({"linktype": linktype, "snaplen": snaplen,
                                "tsresol": res, "name": None})
        yield _HEADER_DONE
        rec = struct.Struct(order + "IIII")
        unpack_rec = rec.unpack_from
        off = 24
        number = 0
        size_known = not win.streaming
        src = win.src
        while True:
            if size_known:
                if off + 16 > src.size:
                    if off < src.size:
                        raise self._damaged(
                            f"file ends inside a record header ({src.size - off} of 16 bytes)", off)
                    return
                sec, frac, caplen, wirelen = unpack_rec(src.buf, off)
            else:
                h = win.get(off, off + 16)
                if h is None:
                    left = win.available_from(off)
                    if win.error:
                        raise self._damaged(win.error, off)
                    if left:
                        raise self._damaged(
                            f"file ends inside a record header ({left} of 16 bytes)", off)
                    return
                sec, frac, caplen, wirelen = rec.unpack(h)
            if caplen > MAX_CAPLEN:
                raise self._damaged(
                    f"record claims {caplen} captured bytes, more than the maximum of "
                    f"{MAX_CAPLEN} (corrupt length field)", off)
            start = off + 16
            end = start + caplen
            if size_known:
                if end > src.size:
                    raise self._damaged(
                        f"record cut short: {caplen} bytes declared, "
                        f"{src.size - start} present", off)
                data = src.buf[start:end]
            else:
                data = win.get(start, end)
                if data is None:
                    if win.error:
                        raise self._damaged(win.error, off)
                    raise self._damaged(
                        f"record cut short: {caplen} bytes declared, "
                        f"{win.available_from(start)} present", off)
                win.release(end)
            number += 1
            self.frames_read = number
            if caplen > snaplen and snaplen and len(self.warnings) < 1000:
                self.warnings.append((number, "caplen-exceeds-snaplen"))
            if caplen > wirelen and len(self.warnings) < 1000:
                self.warnings.append((number, "caplen-exceeds-wire-length"))
            if frac * res >= 1.0 and len(self.warnings) < 1000:
                self.warnings.append((number, "timestamp-fraction-out-of-range"))
            yield _tuples.make(Frame, (number, sec + frac * res, caplen, wirelen, linktype, 0,
                                       data))
            off = end

    # ----------------------------------------------------------------- pcapng

    def _pcapng(self):
        win = self._win
        info = self.info
        off = 0
        number = 0
        order = "<"
        ifaces: list[tuple[int, int, float, float]] = []  # (linktype, snaplen, tsres, tsoffset)
        first = True
        while True:
            h = win.get(off, off + 8)
            if h is None:
                left = win.available_from(off)
                if first:
                    raise NotACaptureError(
                        f"truncated pcapng section header ({left} bytes)", path=self.path)
                if win.error:
                    raise self._damaged(win.error, off)
                if left:
                    raise self._damaged(f"file ends inside a block header ({left} bytes)", off)
                return
            btype_raw = h[:4]
            if btype_raw == PCAPNG_SHB:
                bom = win.get(off + 8, off + 12)
                if bom == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    if first:
                        raise NotACaptureError("pcapng section header with a bad byte-order magic",
                                               path=self.path)
                    raise self._damaged("pcapng section header with a bad byte-order magic", off)
                info.byte_order = order
                ifaces = []  # interface ids are per section
            btype, blen = struct.unpack(order + "II", h)
            if blen < 12 or blen % 4 or blen > MAX_BLOCK_LEN:
                if first:
                    raise NotACaptureError(f"pcapng section header has a bad length ({blen})",
                                           path=self.path)
                raise self._damaged(f"pcapng block of type 0x{btype:x} has a bad length ({blen})",
                                    off)
            body = win.get(off + 8, off + blen)
            if body is None:
                if win.error:
                    raise self._damaged(win.error, off)
                raise self._damaged(
                    f"pcapng block cut short: {blen} bytes declared, "
                    f"{win.available_from(off)} present", off)
            (trail,) = struct.unpack(order + "I", body[-4:])
            if trail != blen:
                raise self._damaged(
                    f"pcapng block length {blen} does not match its trailing copy {trail}", off)
            body = body[:-4]
            if first:
                first = False
                yield _HEADER_DONE
            if btype == 1:  # Interface Description Block
                if len(body) < 8:
                    raise self._damaged("interface description block too short", off)
                lt, _res, snap = struct.unpack(order + "HHI", body[:8])
                tsres, tsoff, name = 1e-6, 0.0, None
                for code, val in _options(body, 8, order):
                    if code == 9 and val:
                        v = val[0]
                        tsres = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
                    elif code == 14 and len(val) >= 8:
                        tsoff = float(struct.unpack(order + "q", val[:8])[0])
                    elif code == 2:
                        name = val.decode("utf-8", "replace")
                ifaces.append((lt, snap, tsres, tsoff))
                info.interfaces.append({"linktype": lt, "snaplen": snap, "tsresol": tsres,
                                        "name": name})
            elif btype == 6 or btype == 2:  # Enhanced / obsolete Packet Block
                if btype == 6:
                    if len(body) < 20:
                        raise self._damaged("enhanced packet block too short", off)
                    ifid, tsh, tsl, caplen, wirelen = struct.unpack(order + "IIIII", body[:20])
                else:
                    if len(body) < 20:
                        raise self._damaged("packet block too short", off)
                    ifid, _drops, tsh, tsl, caplen, wirelen = struct.unpack(order + "HHIIII",
                                                                            body[:20])
                if ifid >= len(ifaces):
                    raise self._damaged(f"packet refers to interface {ifid}, which was not described",
                                        off)
                if caplen > len(body) - 20:
                    raise self._damaged(
                        f"packet block claims {caplen} captured bytes but holds {len(body) - 20}",
                        off)
                if caplen > MAX_CAPLEN:
                    raise self._damaged(
                        f"packet claims {caplen} captured bytes, more than the maximum of "
                        f"{MAX_CAPLEN}", off)
                lt, _snap, tsres, tsoff = ifaces[ifid]
                number += 1
                self.frames_read = number
                ts = ((tsh << 32) | tsl) * tsres + tsoff
                yield _tuples.make(Frame, (number, ts, caplen, wirelen, lt, ifid,
                                           body[20:20 + caplen]))
            elif btype == 3:  # Simple Packet Block
                if not ifaces:
                    raise self._damaged("simple packet block before any interface", off)
                (wirelen,) = struct.unpack(order + "I", body[:4])
                lt, snap, _tsres, _tsoff = ifaces[0]
                caplen = min(wirelen, len(body) - 4)
                if snap:
                    caplen = min(caplen, snap)
                number += 1
                self.frames_read = number
                yield _tuples.make(Frame, (number, 0.0, caplen, wirelen, lt, 0,
                                           body[4:4 + caplen]))
            # other blocks (name resolution, statistics, decryption secrets, custom) skipped
            off += blen
            win.release(off)


_HEADER_DONE = object()


def _options(body: bytes, start: int, order: str):
    """Iterate (code, value) of a pcapng options list; stops quietly at malformed ones."""
    i = start
    n = len(body)
    while i + 4 <= n:
        code, length = struct.unpack(order + "HH", body[i:i + 4])
        if code == 0:
            return
        val = body[i + 4:i + 4 + length]
        if len(val) < length:
            return
        yield code, val
        i += 4 + ((length + 3) & ~3)


def read_frames(path: str) -> Iterator[Frame]:
    """Convenience: every frame of ``path`` (raises on damage after yielding earlier frames)."""
    with CaptureReader(path) as r:
        yield from r
