"""Helpers shared by the TCP analysis tests: tshark's per-frame TCP analysis, and ours.

tshark is run once per capture per test session (cached); both sides are reduced to
``{frame: (stream, frozenset(flags))}`` for frames that carry TCP.
"""

from __future__ import annotations

import functools
import subprocess

from dissect.analysis.tcp import FLAG_NAMES, TcpAnalyzer
from dissect.columns.segment import TcpSegment

FLAG_FIELDS = tuple("tcp.analysis." + n.replace("-", "_") for n in FLAG_NAMES)
VALUE_FIELDS = ("tcp.analysis.initial_rtt", "tcp.analysis.acks_frame",
                "tcp.analysis.duplicate_ack_num", "tcp.analysis.duplicate_ack_frame",
                "tcp.analysis.rto_frame", "tcp.analysis.bytes_in_flight", "tcp.flags")
FIELDS = ("frame.number", "tcp.stream") + FLAG_FIELDS + VALUE_FIELDS


@functools.lru_cache(maxsize=None)
def tshark_tcp(path: str) -> dict[int, dict]:
    """frame -> {"stream": int, "flags": frozenset, field: str...} for frames with one TCP layer.

    Frames with more than one TCP header (ICMP errors quoting TCP, tunnels) keep the list
    of streams in "streams" so a test can tell them apart.
    """
    args = ["tshark", "-n", "-r", path, "-T", "fields", "-E", "occurrence=a",
            "-E", "separator=\t"]
    for f in FIELDS:
        args += ["-e", f]
    p = subprocess.run(args, capture_output=True, text=True, timeout=600)
    out: dict[int, dict] = {}
    nflag = len(FLAG_FIELDS)
    for line in p.stdout.splitlines():
        cols = line.split("\t")
        if len(cols) < len(FIELDS) or not cols[1]:
            continue
        frame = int(cols[0])
        streams = [int(x) for x in cols[1].split(",")]
        flags = frozenset(n for n, v in zip(FLAG_NAMES, cols[2:2 + nflag]) if v)
        rec = {"stream": streams[-1], "streams": streams, "flags": flags}
        for f, v in zip(VALUE_FIELDS, cols[2 + nflag:]):
            rec[f] = v
        out[frame] = rec
    return out


def ours(path: str, segments=None):
    """Run TcpAnalyzer over the capture: (verdicts by frame, analyzer)."""
    from dissect.columns.decode import iter_transport
    an = TcpAnalyzer()
    res = {}
    for seg in (segments if segments is not None else iter_transport(path)):
        if type(seg) is TcpSegment:
            res[seg.frame] = an.feed(seg)
    return res, an


def compare(path: str, skip_frames=frozenset()):
    """Per-frame differences between tshark and us: list of (frame, what, tshark, ours)."""
    ref = tshark_tcp(path)
    mine, _an = ours(path)
    diffs = []
    for frame in sorted(set(ref) | set(mine)):
        if frame in skip_frames:
            continue
        r = ref.get(frame)
        m = mine.get(frame)
        if r is None or m is None:
            diffs.append((frame, "presence", r and r["stream"], m and m.conn))
            continue
        if r["stream"] != m.conn:
            diffs.append((frame, "stream", r["stream"], m.conn))
        if r["flags"] != frozenset(m.flags):
            diffs.append((frame, "flags", sorted(r["flags"]), sorted(m.flags)))
    return diffs
