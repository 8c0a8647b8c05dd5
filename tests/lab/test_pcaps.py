"""The committed lab captures (pcaps/, made by scripts/make_pcaps.py) match their ground truth."""

from __future__ import annotations

import ipaddress

import hashlib
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PCAPS = REPO / "pcaps"

_spec = importlib.util.spec_from_file_location("make_pcaps", REPO / "scripts" / "make_pcaps.py")
make_pcaps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_pcaps)
NAMES = [c[0] for c in make_pcaps.CAPTURES]
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")


def _fields(path, *fields, extra=()):
    args = ["tshark", "-n", "-r", str(path), *extra, "-T", "fields", "-E", "occurrence=a"]
    for f in fields:
        args += ["-e", f]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line.split("\t") for line in proc.stdout.splitlines()]


@pytest.mark.parametrize("name", NAMES)
def test_capture_and_truth_are_committed_and_agree(name):
    pcap, truth_path = PCAPS / f"{name}.pcap", PCAPS / f"{name}.json"
    assert pcap.exists() and truth_path.exists()
    truth = json.loads(truth_path.read_text())
    assert pcap.stat().st_size < make_pcaps.MAX_BYTES
    assert hashlib.sha256(pcap.read_bytes()).hexdigest() == truth["capture"]["sha256"]
    assert truth["capture"]["file"] == pcap.name
    assert truth["capture"]["dropped_by_kernel"] == 0
    assert f"## {name}.pcap" in (PCAPS / "README.md").read_text()
    assert truth["provenance"].startswith(f"dissect lab {truth['scenario']} -w {pcap.name}")


@needs_tshark
@pytest.mark.parametrize("name", NAMES)
def test_committed_capture_is_loopback_only_and_complete(name):
    truth = json.loads((PCAPS / f"{name}.json").read_text())
    rows = _fields(PCAPS / f"{name}.pcap", "ip.addr", "ipv6.addr")
    assert len(rows) == truth["capture"]["captured"]
    addrs = {a for r in rows for col in r for a in col.split(",") if a}
    assert all(ipaddress.ip_address(a).is_loopback for a in addrs)


@needs_tshark
def test_loss_capture_shows_the_dropped_segment_and_its_retransmission():
    truth = json.loads((PCAPS / "http-keepalive-loss.json").read_text())
    assert truth["loss"]["pct"] > 0 and truth["loss"]["dropped_packets"] >= 1
    rows = _fields(PCAPS / "http-keepalive-loss.pcap", "tcp.analysis.retransmission")
    assert any(r[0] for r in rows)
    assert not any(r[0] for r in _fields(PCAPS / "http-keepalive.pcap",
                                         "tcp.analysis.retransmission"))
