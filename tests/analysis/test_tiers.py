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
        assert not rec["ambiguous"] and rec["confidence"] == 1.0
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
    _check(_run_lab("tiers", tmp_path))


def _run_lab(name, tmp_path):
    cap = tmp_path / f"{name}.pcap"
    p = subprocess.run([sys.executable, "-m", "dissect", "lab", name, "-w", str(cap)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return cap


def _check_breaker(cap: Path):
    """The gateway's breaker against what the gateway and the backend recorded: per user
    request, the attempts at each tier; the requests the gateway answered without calling
    the backend; the breaker's transitions; and no backend call while it was open."""
    truth = json.loads(cap.with_suffix(".json").read_text())
    server = truth["server"]["records"]
    client = [r for r in truth["client"]["records"] if r["kind"] == "attempt"]
    recs = cascade_records(Engine(str(cap)).run())
    trees = [r for r in recs if r["type"] == "cascade"]
    (brk,) = [r for r in recs if r["type"] == "cascade-breaker"]
    users = sorted({r["user_request"] for r in client})
    assert [r["root"]["target"] for r in trees] == [f"/order/{u}" for u in users]
    for tree, u in zip(trees, users):
        tries = [r for r in client if r["user_request"] == u]
        below = [r for r in server if r["kind"] == "gateway-attempt"
                 and r["path"] == f"/order/{u}"]
        short = [r for r in server if r["kind"] == "gateway-short-circuit"
                 and r["path"] == f"/order/{u}" and r["attempt"] == 1]
        assert tree["amplification"] == [1, len(tries), len(below)], tree["amplification"]
        assert tree["tiers"][0]["short_circuited"] == len(short)
        flagged = [n for n in tree["tree"] if n["short_circuited"]]
        assert len(flagged) == len(short)
        assert all(n["children"] == [] for n in flagged)
    # the breaker: the same transitions as the gateway's own, within 25 ms
    want = truth["server"]["transitions"]
    assert [x["to"] for x in brk["transitions"]] == [x["to"] for x in want]
    for got, w in zip(brk["transitions"], want):
        assert abs(got["t"] - w["t"]) < 0.025, (got, w)
    assert brk["service"] == "127.0.0.2:8081" and brk["below"] == "127.0.0.3:8082"
    assert brk["short_circuited"] == sum(
        1 for r in server if r["kind"] == "gateway-short-circuit" and r["attempt"] == 1)
    # while open, nothing reached the backend from the gateway (its own records)
    calls = [r["start"] for r in server if r["kind"] == "backend" and r["path"] == "/item"]
    for p in brk["open_periods"]:
        assert p["requests"] >= 1
        assert not [t for t in calls if p["from"] + 0.001 < t < p["until"] - 0.001]
    return recs


def _check_tcp(cap: Path):
    """Plain TCP tiers: one tree per client call (turns carry no outcome to group retries
    by), each with as many backend calls as the gateway made for it."""
    truth = json.loads(cap.with_suffix(".json").read_text())
    client = [r for r in truth["client"]["records"] if r["kind"] == "attempt"]
    gw = [r for r in truth["server"]["records"] if r["kind"] == "gateway-attempt"]
    res = Engine(str(cap)).run()
    ex = [r for r in res.records if r["type"] == "tcp-exchange"]
    # every call of every tier is one exchange: the client's, the gateway's, the unrelated
    assert len(ex) == len(client) + len(gw) + 1
    assert all(r["response_frame"] is not None for r in ex)
    trees = [r for r in cascade_records(res) if r["type"] == "cascade"]
    by_up: dict = {}
    for r in gw:
        by_up.setdefault(r["upstream"], []).append(r)
    want = [[1, 1, len(v)] for v in sorted(by_up.values(), key=lambda v: v[0]["start"])]
    assert [t["amplification"] for t in trees] == want
    assert len(trees) == len(client)
    assert all(t["root"]["proto"] == "tcp" for t in trees)
    return trees


def _check_grpc(cap: Path):
    """gRPC tiers: per user request, the client's attempts and the gateway's backend calls
    (persistent channels: calls are HTTP/2 streams, not connections)."""
    truth = json.loads(cap.with_suffix(".json").read_text())
    client = [r for r in truth["client"]["records"] if r["kind"] == "attempt"]
    gw = [r for r in truth["server"]["records"] if r["kind"] == "gateway-attempt"]
    trees = [r for r in cascade_records(Engine(str(cap)).run()) if r["type"] == "cascade"]
    users = sorted({r["user_request"] for r in client})
    assert len(trees) == len(users)
    for tree, u in zip(trees, users):
        tries = [r for r in client if r["user_request"] == u]
        below = [r for r in gw if r["request"] == f"order {u}"]
        assert tree["amplification"] == [1, len(tries), len(below)]
        assert tree["root"]["proto"] == "grpc"
        assert tree["tiers"][0]["statuses"] == [r["status"] for r in tries]
        assert tree["tiers"][1]["statuses"] == [r["status"] for r in below]
        assert not tree["ambiguous"]


def test_committed_grpc_capture():
    cap = PCAPS / "grpc-tiers.pcap"
    if not cap.exists():
        pytest.skip("grpc-tiers.pcap not committed")
    _check_grpc(cap)


@needs_root
@needs_tcpdump
def test_live_grpc_run(tmp_path):
    pytest.importorskip("grpc_tools", reason="grpcio-tools not installed")
    _check_grpc(_run_lab("tiers-grpc", tmp_path))


def test_committed_breaker_capture():
    cap = PCAPS / "http-tiers-breaker.pcap"
    if not cap.exists():
        pytest.skip("http-tiers-breaker.pcap not committed")
    recs = _check_breaker(cap)
    rc, out, err = run_dissect("cascades", cap)
    assert rc == 0, err
    assert "circuit breaker in 127.0.0.2:8081" in out and "short-circuited" in out
    assert "0 reached 127.0.0.3:8082" in out
    assert any(r["type"] == "cascade" and r["amplification"][-1] < 3 * r["amplification"][1]
               for r in recs)


def test_committed_tcp_capture():
    cap = PCAPS / "tcp-tiers.pcap"
    if not cap.exists():
        pytest.skip("tcp-tiers.pcap not committed")
    _check_tcp(cap)


@needs_root
@needs_tcpdump
def test_live_breaker_run(tmp_path):
    _check_breaker(_run_lab("tiers-breaker", tmp_path))


@needs_root
@needs_tcpdump
def test_live_tcp_run(tmp_path):
    _check_tcp(_run_lab("tiers-tcp", tmp_path))


def test_grpc_and_tcp_records_are_transactions():
    from dissect.analysis.tiers import _transactions

    class R:
        connections = [{"id": 0, "client": {"ip": "127.0.0.1", "port": 5000},
                        "server": {"ip": "127.0.0.2", "port": 81}},
                       {"id": 1, "client": {"ip": "127.0.0.2", "port": 5001},
                        "server": {"ip": "127.0.0.3", "port": 82}}]
        records = [
            {"type": "http2", "conn": 0, "stream_id": 1, "path": "/s/M", "status": 200,
             "request_ts": 1.0, "response_ts": 1.5, "response_end_ts": 1.6,
             "request_frame": 4},
            {"type": "grpc", "conn": 0, "stream_id": 1, "path": "/s/M", "grpc_status": 14,
             "grpc_status_name": "UNAVAILABLE", "frames": [4, 9], "request_ts": 1.0,
             "response_ts": 1.5, "response_end_ts": 1.6},
            {"type": "tcp-exchange", "conn": 1, "request_frame": 6, "request_ts": 1.1,
             "request_end_ts": 1.1, "request_bytes": 12, "response_frame": 7,
             "response_ts": 1.3, "response_end_ts": 1.3, "response_bytes": 8}]
    txs = _transactions(R)
    assert [t.proto for t in txs] == ["grpc", "tcp"]     # the http2 stream is the gRPC call
    g, t = txs
    assert g.failed and g.status == "UNAVAILABLE" and g.end == 1.6 and g.frame == 4
    assert not t.failed and t.target == "12 B request"
    link(txs)
    assert t.parents == [g]


def test_link_confidence():
    from dissect.analysis.tiers import SLACK_S, link_confidence
    up = _tx("10.0.0.1", "127.0.0.2:80", 1.0, 2.0)
    inside = _tx("127.0.0.2", "127.0.0.3:80", 1.1, 1.9)
    edge = _tx("127.0.0.2", "127.0.0.3:80", 1.0 - SLACK_S / 2, 1.05)
    outside = _tx("127.0.0.2", "127.0.0.3:80", 1.0 - 3 * SLACK_S, 1.05)
    link([up, inside, edge, outside])
    assert inside.parents == [up] and edge.parents == [up] and outside.parents == []
    assert link_confidence(up, inside) == 1.0
    assert link_confidence(up, edge) < 1.0


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
