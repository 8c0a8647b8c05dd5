"""Cascades against the three-tier lab's ground truth, and the linking rules on synthetic
transactions (ambiguity, unrelated traffic)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import PCAPS, needs_root, needs_tcpdump, run_dissect  # noqa: E402

from dissect.analysis.tiers import _Tx, cascade_records, link, worst_amplification  # noqa: E402
from dissect.engine import Engine  # noqa: E402


def _truth_counts(truth):
    client = [r for r in truth["client"]["records"] if r["kind"] == "attempt"]
    server = truth["server"]["records"]
    per_user = {}
    for r in client:
        per_user.setdefault(r["user_request"], []).append(r)
    gw = [r for r in server if r["kind"] == "gateway-attempt"]
    return per_user, gw, [r for r in client if False], server


def _check(cap: Path):
    truth = json.loads(cap.with_suffix(".json").read_text())
    per_user, gw, _, server = _truth_counts(truth)
    recs = cascade_records(Engine(str(cap)).run())
    assert len(recs) == len(per_user)
    # the gateway's backend attempts, in order, split by the client attempt they served
    it = iter(gw)
    for rec, (user, attempts) in zip(recs, sorted(per_user.items())):
        assert rec["root"]["target"] == f"/order/{user}"
        backend = 0
        for a in attempts:
            tries = [next(it)]
            while tries[-1]["status"] != 200 and tries[-1]["attempt"] < 3:
                tries.append(next(it))
            backend += len(tries)
        assert rec["amplification"] == [1, len(attempts), backend]
        assert not rec["ambiguous"]
    # the unrelated client (127.0.0.4) called the backend: it is in no tree
    flat = json.dumps(recs)
    unrelated = [r for r in truth["client"]["records"] if r["kind"] == "unrelated"]
    assert unrelated and "/direct" not in flat
    return recs


def test_committed_three_tier_capture():
    cap = PCAPS / "http-tiers.pcap"
    if not cap.exists():
        pytest.skip("http-tiers.pcap not committed")
    recs = _check(cap)
    assert recs[0]["amplification"][-1] > recs[0]["amplification"][1] > 1
    assert worst_amplification(recs) is recs[0]


@needs_root
@needs_tcpdump
def test_live_three_tier_run(tmp_path):
    cap = tmp_path / "tiers.pcap"
    p = subprocess.run([sys.executable, "-m", "dissect", "lab", "tiers", "-w", str(cap)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    _check(cap)


def _tx(client, server, start, end):
    return _Tx({"request_ts": start, "response_ts": end}, client, server)


def test_linking_rules_and_ambiguity():
    a1 = _tx("10.0.0.1", "127.0.0.2:80", 0.0, 1.0)
    a2 = _tx("10.0.0.9", "127.0.0.2:80", 0.5, 2.0)
    d_only_a1 = _tx("127.0.0.2", "127.0.0.3:80", 0.1, 0.4)     # inside a1 only
    d_both = _tx("127.0.0.2", "127.0.0.3:80", 0.6, 0.9)        # inside a1 and a2
    other = _tx("127.0.0.4", "127.0.0.3:80", 0.2, 0.3)         # another host: never linked
    link([a1, a2, d_only_a1, d_both, other])
    assert d_only_a1.parents == [a1] and a1.children == [d_only_a1]
    assert len(d_both.parents) == 2 and d_both not in a1.children + a2.children
    assert other.parents == []


def test_cascades_command():
    cap = PCAPS / "http-tiers.pcap"
    if not cap.exists():
        pytest.skip("not committed")
    rc, out, err = run_dissect("cascades", cap)
    assert rc == 0, err
    assert "amplification 1 -> " in out and "tier 1 127.0.0.3:8082" in out
