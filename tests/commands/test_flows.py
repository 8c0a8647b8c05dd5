"""dissect flows: the connection table against tshark, and the ladder of a real handshake."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import PCAPS, needs_tshark, run_dissect, tshark_fields  # noqa: E402


def _cap(name):
    p = PCAPS / name
    if not p.exists():
        pytest.skip(f"{name} not committed")
    return p


@needs_tshark
@pytest.mark.parametrize("name", ["http-keepalive.pcap", "http-keepalive-loss.pcap",
                                  "ftp-passive.pcap", "http-retry-backoff.pcap",
                                  "tcp-syn-backoff-classic.pcap"])
def test_connections_match_tshark_streams_and_irtt(name):
    cap = _cap(name)
    rc, out, err = run_dissect("flows", cap, "--format", "jsonl", "--proto", "tcp")
    assert rc == 0, err
    conns = [json.loads(l) for l in out.splitlines()]
    rows = tshark_fields(cap, ["tcp.stream", "tcp.flags.syn", "tcp.flags.ack", "frame.number",
                               "tcp.analysis.initial_rtt"])
    streams = {int(r[0]) for r in rows if r[0]}
    assert sorted(c["id"] for c in conns) == sorted(streams)
    for c in conns:
        mine = [r for r in rows if r[0] and int(r[0]) == c["id"]]
        syn = next((int(r[3]) for r in mine if r[1] == "1" and r[2] == "0"), None)
        synack = next((int(r[3]) for r in mine if r[1] == "1" and r[2] == "1"), None)
        irtt = next((float(r[4]) for r in mine if r[4]), None)
        hs = c["handshake"] or {}
        assert hs.get("syn") == syn and hs.get("syn_ack") == synack
        if irtt is not None:
            assert abs(hs["rtt_s"] - irtt) < 1e-6
        assert c["first_frame"] == int(mine[0][3]) and c["last_frame"] == int(mine[-1][3])


def test_ladder_draws_the_real_handshake():
    cap = _cap("http-keepalive.pcap")
    rc, out, err = run_dissect("flows", cap, "--ladder", "0", "--ascii")
    assert rc == 0, err
    lines = [l for l in out.splitlines() if l.strip() and l.strip()[0].isdigit()]
    syn, synack, ack = lines[:3]
    assert "SYN seq=0" in syn and syn.rstrip().endswith(">|")          # client -> server
    assert "SYN,ACK seq=0 ack=1" in synack and "|<" in synack          # server -> client
    assert "ACK seq=1 ack=1" in ack and ack.rstrip().endswith(">|")
    assert "FIN" in out


def test_ladder_marks_retransmissions_and_unknown_id():
    cap = _cap("http-keepalive-loss.pcap")
    rc, out, _ = run_dissect("flows", cap, "--ladder", "0", "--ascii")
    assert rc == 0 and "[retransmission" in out
    rc, _, err = run_dissect("flows", cap, "--ladder", "99")
    assert rc == 2 and "no TCP connection 99" in err
