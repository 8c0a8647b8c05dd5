"""Fuzz targets shared by the bounded fuzz tests and ``scripts/fuzz.py`` (long runs).

Invariant for every target: any input either dissects or raises dissect's own documented
error (a :class:`~dissect.errors.DissectError`), never another exception.
"""

from __future__ import annotations

import os
import struct
import tempfile

from dissect.columns.decode import decode_frame
from dissect.errors import DissectError
from dissect.io.capture import CaptureReader, Frame
from dissect.protocols.frame import dissect_frame

LINKTYPES = (1, 113, 276, 101, 228, 229, 0, 108, 192, 12, 281)


def frame_target(data: bytes, linktype: int) -> None:
    """Both paths over one frame of arbitrary bytes."""
    fr = Frame(1, 0.0, len(data), len(data) + (data[0] if data else 0), linktype, 0, data)
    d = decode_frame(fr)
    layers = dissect_frame(fr)
    for lay in layers:
        lay.to_record()
        for f in lay.fields:
            assert f.offset >= 0 and f.length >= 0
    assert d.chain is not None


def capture_target(blob: bytes) -> int:
    """A whole file of arbitrary bytes through the reader and both decoders."""
    fd, path = tempfile.mkstemp(suffix=".bin")
    try:
        os.write(fd, blob)
        os.close(fd)
        n = 0
        try:
            with CaptureReader(path) as r:
                for fr in r:
                    decode_frame(fr)
                    dissect_frame(fr)
                    n += 1
        except DissectError:
            pass
        return n
    finally:
        os.unlink(path)


def pcap_header(linktype: int = 1, big: bool = False, ns: bool = False) -> bytes:
    o = ">" if big else "<"
    return struct.pack(o + "IHHiIII", 0xA1B23C4D if ns else 0xA1B2C3D4, 2, 4, 0, 0, 65535,
                       linktype)


def pcap_record(data: bytes, big: bool = False) -> bytes:
    o = ">" if big else "<"
    return struct.pack(o + "IIII", 1_700_000_000, 0, len(data), len(data)) + data
