"""``dissect timing``: the command end to end on lab captures, text and JSONL."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis" / "findings"))
from conftest import PCAPS  # noqa: E402
import engine_helper  # noqa: E402


@pytest.fixture
def dispatcher(monkeypatch):
    """The application dispatcher: the real one, or the tests' stand-in while it is missing."""
    if not engine_helper.real_dispatcher():
        import types
        mod = types.ModuleType("dissect.analysis.app.dispatch")
        mod.AppDispatcher = engine_helper.StandInDispatcher
        monkeypatch.setitem(sys.modules, "dissect.analysis.app.dispatch", mod)


@pytest.fixture
def timing_cmd():
    from click.testing import CliRunner

    from dissect.commands.timing import timing

    def run(*args):
        r = CliRunner().invoke(timing, [str(a) for a in args], catch_exceptions=False)
        return r.exit_code, r.stdout
    return run


def test_timing_text_golden_shape_for_dns(dispatcher, timing_cmd):
    code, out = timing_cmd(PCAPS / "dns-resend.pcap")
    assert code == 0
    blocks = out.strip().split("\n\n")
    assert len(blocks) == 6
    slow = blocks[3].splitlines()
    assert re.fullmatch(r"conn udp/0  dns  slow\.dissect\.test qtype=A rcode=NOERROR  "
                        r"total 1\.00\d s  slowest: wait", slow[0])
    # one row per stage: name, OSI layer, a bar of fixed width, duration, frames
    assert [ln.split()[0:2] for ln in slow[1:]] == [["request", "L7"], ["wait", "L7"],
                                                 ["transfer", "L7"]]
    bars = [ln[ln.index("|") + 1:ln.rindex("|")] for ln in slow[1:]]
    assert all(len(b) == 40 for b in bars)
    assert bars[1] == "." * 40                       # the wait fills the whole span
    assert slow[2].rstrip().endswith("frames 7,9 *")  # slowest stage marked
    assert "retransmission" in blocks[4].splitlines()[0]


def test_timing_text_tls_stage_labelled_l5_l6(dispatcher, timing_cmd):
    code, out = timing_cmd(PCAPS / "tls-https-sni.pcap")
    assert code == 0
    first = out.split("\n\n")[0].splitlines()
    assert "(encrypted)" in first[0]
    assert [ln.split()[:2] for ln in first[1:3]] == [["handshake", "L4"], ["tls", "L5/L6"]]
    assert "#" in first[2]


def test_timing_jsonl_and_slowest(dispatcher, timing_cmd):
    code, out = timing_cmd(PCAPS / "ftp-passive.pcap", "--format", "jsonl")
    assert code == 0
    recs = [json.loads(ln) for ln in out.splitlines()]
    assert recs and all(r["type"] == "timing" for r in recs)
    assert all({"conn", "protocol", "transaction", "stages", "total_s", "slowest"} <= set(r)
               for r in recs)
    code, out = timing_cmd(PCAPS / "ftp-passive.pcap", "--format", "jsonl", "--slowest", "2")
    top = [json.loads(ln) for ln in out.splitlines()]
    assert len(top) == 2
    assert [r["total_s"] for r in top] == sorted((r["total_s"] for r in recs), reverse=True)[:2]
    # no password in any output
    assert "lab-password" not in out


def test_timing_bad_file_is_our_error(tmp_path, dispatcher):
    from conftest import run_dissect
    bad = tmp_path / "x.pcap"
    bad.write_bytes(b"not a capture at all")
    code, _out, err = run_dissect("timing", bad)
    assert code != 0 and "Traceback" not in err and "dissect: error" in err
