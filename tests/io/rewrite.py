"""Rewrite real Ethernet frames into other link types and file formats (test helper).

The frames stay the real ones recorded from the kernel; only the link-layer wrapping
and the file format change, so tshark and dissect can be compared on every combination.
"""

from __future__ import annotations

import struct

from dissect.io.capture import read_frames
from dissect.io.writer import PcapngWriter, PcapWriter


def _l3(frame_data: bytes):
    etype = struct.unpack_from("!H", frame_data, 12)[0]
    return etype, frame_data[14:]


def relink(data: bytes, linktype: str) -> tuple[int, bytes] | None:
    """Ethernet frame -> (linktype number, frame bytes) for another link type."""
    etype, l3 = _l3(data)
    if etype not in (0x0800, 0x86DD):
        return None
    v6 = etype == 0x86DD
    if linktype == "sll":
        return 113, struct.pack("!HHH8sH", 0, 772, 6, data[6:12] + b"\0\0", etype) + l3
    if linktype == "sll2":
        return 276, struct.pack("!HHIHBB8s", etype, 0, 1, 772, 0, 6, data[6:12] + b"\0\0") + l3
    if linktype == "raw":
        return 101, l3
    if linktype == "ipv4":
        return (228, l3) if not v6 else None
    if linktype == "ipv6":
        return (229, l3) if v6 else None
    if linktype == "null":
        return 0, struct.pack("<I", 30 if v6 else 2) + l3
    if linktype == "loop":
        return 108, struct.pack("!I", 24 if v6 else 2) + l3
    if linktype == "vlan":
        return 1, data[:12] + struct.pack("!HH", 0x8100, 0x2000 | 42) + data[12:]
    if linktype == "qinq":
        return 1, data[:12] + struct.pack("!HHHH", 0x88A8, 100, 0x8100, 0x2000 | 42) + data[12:]
    raise ValueError(linktype)


def write_variant(src: str, dst: str, fmt: str, linktype: str = "eth") -> int:
    """Write the frames of ``src`` to ``dst`` in ``fmt``; returns the frame count."""
    frames = list(read_frames(src))
    conv = []
    for fr in frames:
        if linktype == "eth":
            conv.append((fr.ts, 1, fr.data, fr.wirelen))
        else:
            r = relink(fr.data, linktype)
            if r is None:
                continue
            lt, data = r
            conv.append((fr.ts, lt, data, fr.wirelen - len(fr.data) + len(data)))
    gz = fmt.endswith(".gz")
    base = fmt[:-3] if gz else fmt
    if base.startswith("pcap-"):
        _, res, order = base.split("-")
        with PcapWriter(dst, conv[0][1], nanosecond=res == "ns", big_endian=order == "be",
                        force=True, compress=gz) as w:
            for ts, _lt, data, wl in conv:
                w.write(ts, data, wl)
    else:   # pcapng-<le|be>-<epb|opb|spb|multi>
        _, order, block = base.split("-")
        with PcapngWriter(dst, big_endian=order == "be", force=True, compress=gz) as w:
            if block == "multi":
                # two interfaces with different resolutions; frames alternate between them
                w.interface(conv[0][1], tsresol=6, name="lo-us")
                w.interface(conv[0][1], tsresol=9, name="lo-ns")
                for i, (ts, _lt, data, wl) in enumerate(conv):
                    w.write(ts, data, iface=i % 2, wirelen=wl)
            else:
                w.interface(conv[0][1], tsresol=6)
                for ts, _lt, data, wl in conv:
                    w.write(ts, data, wirelen=wl, block=block)
    return len(conv)
