"""The dissect command as users run it: reports, JSON Lines contract, errors and exit codes."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import PCAPS, corpus_files, needs_tshark, run_dissect, tshark_fields  # noqa: E402

from dissect.errors import ExitCode  # noqa: E402


def _a_capture() -> Path:
    for name in ("http-keepalive-loss.pcap", "http-keepalive.pcap"):
        if (PCAPS / name).exists():
            return PCAPS / name
    caps = sorted(PCAPS.glob("*.pcap"))
    if not caps:
        pytest.skip("no committed capture in pcaps/")
    return caps[0]


def test_analyze_text_report_has_every_section():
    rc, out, err = run_dissect("analyze", _a_capture(), "--no-color")
    assert rc == 0, err
    for heading in ("Capture ", "Traffic by OSI layer", "Protocol hierarchy",
                    "Top conversations", "Anomalies"):
        assert heading in out
    assert "L4 transport" in out and "L1 physical" in out
    assert "\x1b[" not in out


def test_analyze_jsonl_contract():
    cap = _a_capture()
    rc, out, err = run_dissect("analyze", cap, "--format", "jsonl")
    assert rc == 0, err
    recs = [json.loads(l) for l in out.splitlines()]
    assert recs[-1]["type"] == "summary"
    pkts = [r for r in recs if r["type"] == "packet"]
    assert [p["frame"] for p in pkts] == list(range(1, len(pkts) + 1))
    assert recs[-1]["frames"] == len(pkts)
    for p in pkts:
        assert {"frame", "ts", "caplen", "len", "layers", "flags", "conn"} <= p.keys()
        assert p["layers"][0]["osi"] == 1
        assert all(1 <= l["osi"] <= 7 for l in p["layers"])
        assert isinstance(p["ts"], float)


@needs_tshark
def test_show_jsonl_fields_match_tshark_for_selected_frames():
    cap = _a_capture()
    rc, out, err = run_dissect("show", cap, "--frames", "1-3,5", "--format", "jsonl")
    assert rc == 0, err
    recs = [json.loads(l) for l in out.splitlines()]
    pkts = [r for r in recs if r["type"] == "packet"]
    assert [p["frame"] for p in pkts] == [1, 2, 3, 5]
    rows = tshark_fields(cap, ["frame.number", "tcp.srcport", "tcp.seq_raw", "ip.ttl"])
    by = {int(r[0]): r for r in rows}
    for p in pkts:
        f = {(l["protocol"], x["name"]): x["value"] for l in p["layers"] for x in l["fields"]}
        row = by[p["frame"]]
        if row[1]:
            assert str(f[("tcp", "srcport")]) == row[1]
            assert str(f[("tcp", "seq_raw")]) == row[2]
        if row[3]:
            assert str(f[("ip", "ttl")]) == row[3]
        for l in p["layers"]:
            for x in l["fields"]:
                assert 0 <= x["offset"] <= p["caplen"]


def test_show_text_orders_layers_application_first_and_filters_layer():
    cap = _a_capture()
    rc, out, _ = run_dissect("show", cap, "--frames", "1", "--no-color")
    assert rc == 0
    idx = [out.index(h) for h in ("L4 transport", "L3 network", "L2 datalink", "L1 physical")]
    assert idx == sorted(idx)
    rc, out, _ = run_dissect("show", cap, "--frames", "1", "--layer", "3", "--no-color")
    assert "L3 network" in out and "L4 transport" not in out and "L1 physical" not in out


def test_not_a_capture(tmp_path):
    p = tmp_path / "notes.pcap"
    p.write_text("hello, I am text\n")
    rc, out, err = run_dissect("analyze", p)
    assert rc == ExitCode.NOT_A_CAPTURE
    assert str(p) in err and "not a pcap or pcapng" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_damaged_capture_keeps_frames_and_names_the_frame(tmp_path):
    cap = _a_capture()
    data = cap.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 7])
    rc, out, err = run_dissect("analyze", cut, "--format", "jsonl")
    assert rc == ExitCode.DAMAGED
    recs = [json.loads(l) for l in out.splitlines()]
    total = recs[-1]["frames"]
    assert total >= 1 and recs[-1]["error"]
    assert f"frame {total + 1}" in err and str(cut) in err
    assert "Traceback" not in err


def test_missing_file_and_bad_frame_range(tmp_path):
    rc, _, err = run_dissect("analyze", tmp_path / "nope.pcap")
    assert rc == ExitCode.IO and "no such file" in err
    rc, _, err = run_dissect("show", _a_capture(), "--frames", "9-3")
    assert rc == ExitCode.USAGE


def test_unsupported_linktype_lists_frames_and_exits_5(tmp_path):
    p = tmp_path / "lt.pcap"
    hdr = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 281)
    p.write_bytes(hdr + struct.pack("<IIII", 1, 0, 4, 4) + b"abcd")
    rc, out, err = run_dissect("analyze", p, "--format", "jsonl")
    assert rc == ExitCode.UNSUPPORTED
    assert "link type 281" in err
    assert [json.loads(l)["type"] for l in out.splitlines()] == ["packet", "summary"]


def test_terminal_escapes_are_neutralised(tmp_path):
    from dissect.report.text import safe
    assert safe("a\x1b[31mred\x07") == "a\\x1b[31mred\\x07"


def test_broken_pipe_is_quiet():
    import subprocess
    cap = _a_capture()
    p = subprocess.run(f"{sys.executable} -m dissect show {cap} | head -1", shell=True,
                       capture_output=True, text=True)
    assert "Traceback" not in p.stderr and "Error" not in p.stderr


@pytest.mark.parametrize("path", [p for p in corpus_files("truncated")][:11] or
                         [pytest.param(None, marks=pytest.mark.skip(reason="no corpus"))])
def test_corpus_broken_files_never_traceback(path):
    rc, out, err = run_dissect("analyze", path, "--format", "jsonl")
    assert "Traceback" not in err
    assert rc in (0, ExitCode.DAMAGED, ExitCode.UNSUPPORTED, ExitCode.NOT_A_CAPTURE)
    if rc:
        assert str(path) in err
    assert json.loads(out.splitlines()[-1])["type"] == "summary"
