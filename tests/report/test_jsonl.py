"""JSON Lines: the fast packet line equals the general record, NaN never leaks."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import PCAPS, corpus_files  # noqa: E402

from dissect.columns.decode import decode_frame  # noqa: E402
from dissect.errors import DissectError  # noqa: E402
from dissect.io.capture import read_frames  # noqa: E402
from dissect.report.jsonl import dumps, packet_line, packet_record  # noqa: E402


def test_fast_packet_line_equals_general_record():
    paths = sorted(PCAPS.glob("*.pcap"))[:4] + corpus_files("vlan", "ipv6")[:4]
    n = 0
    for p in paths:
        try:
            frames = list(read_frames(str(p)))
        except DissectError:
            continue
        for fr in frames:
            d = decode_frame(fr)
            for flags, conn, values in (((), None, None), (("retransmission", "out-of-order"),
                                        7, {"rto": 0.25, "ack_rtt": 1e-5}), ((), "udp/3", None)):
                a = json.loads(packet_line(fr, d, flags, conn, values))
                b = json.loads(dumps(packet_record(fr, None, flags, conn, values, decoded=d)))
                assert a == b
                n += 1
    assert n > 100


def test_non_finite_numbers_become_null():
    line = dumps({"type": "x", "a": math.nan, "b": [math.inf, 1.5]})
    assert json.loads(line) == {"type": "x", "a": None, "b": [None, 1.5]}
