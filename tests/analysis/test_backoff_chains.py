"""Retry chains, backoff models and breakers against what the lab's real clients did
(ground-truth JSON beside each committed capture), and no chains where there are none."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import PCAPS, corpus_files  # noqa: E402

from dissect.analysis.backoff_chains import classify, detect_path  # noqa: E402


def _load(name):
    p = PCAPS / f"{name}.pcap"
    if not p.exists():
        pytest.skip(f"{name}.pcap not committed")
    truth = json.loads((PCAPS / f"{name}.json").read_text())["client"]
    recs, _res = detect_path(str(p))
    return recs, truth


def _close(a, b):
    return abs(a - b) <= max(0.010, 0.05 * b)


@pytest.mark.parametrize("name,model", [("tcp-syn-backoff-linear", "linear-then-exponential"),
                                        ("tcp-syn-backoff-classic", "exponential")])
def test_kernel_syn_backoff(name, model):
    recs, truth = _load(name)
    chains = [r for r in recs if r["kind"] == "syn"] if recs else []
    assert len(chains) == 1
    c = chains[0]
    sent = [r for r in truth["records"] if r.get("chain") == "syn"]
    assert len(c["attempts"]) == len(sent)
    truth_iv = [b["start"] - a["start"] for a, b in zip(sent, sent[1:])]
    assert all(_close(x, t) for x, t in zip(c["intervals_s"], truth_iv))
    assert c["backoff"]["model"] == model and c["gave_up"]


def test_http_retry_with_jitter_and_retry_after():
    recs, truth = _load("http-retry-backoff")
    c = [r for r in recs if r["type"] == "retry" and r["kind"] == "http"]
    assert len(c) == 1
    c = c[0]
    att = truth["records"]
    assert [a["outcome"] for a in c["attempts"]] == [a["status"] for a in att]
    truth_iv = [b["start"] - a["start"] for a, b in zip(att, att[1:])]
    assert all(_close(x, t) for x, t in zip(c["intervals_s"], truth_iv))
    assert c["retry_after_s"] == 1.0 and c["retry_after_honoured"] is True
    # the first wait was the server's Retry-After: the client's own policy (exponential with
    # full jitter) shows in the remaining two intervals only, which prove little
    assert c["backoff"]["excludes_retry_after"] and c["backoff"]["confidence"] <= 0.4
    assert c["succeeded"] and "unsafe-retry" not in c["warnings"]


def test_post_retried_with_idempotency_key_is_not_unsafe():
    recs, truth = _load("http-retry-idempotent-post")
    c = [r for r in recs if r["type"] == "retry" and r["kind"] == "http"][0]
    assert c["key"].startswith("POST")
    assert c["idempotency_key"] and "unsafe-retry" not in c["warnings"]
    assert len(c["attempts"]) == len([r for r in truth["records"] if r["kind"] == "attempt"])
    assert not [r for r in recs if r["type"] == "breaker"]


def test_unsafe_retry_flagged_without_the_key():
    from dissect.analysis.backoff_chains import _http_chain
    run = [{"request_frame": i, "request_ts": float(i), "status": s, "request_headers": []}
           for i, s in enumerate((503, 503, 201))]
    rec = _http_chain("c", "s", "POST", "h", "/x", run, True)
    assert "unsafe-retry" in rec["warnings"]


def test_circuit_breaker_transitions():
    recs, truth = _load("http-circuit-breaker")
    brk = [r for r in recs if r["type"] == "breaker"]
    assert len(brk) == 1
    got = [t["state"] for t in brk[0]["transitions"]]
    want = [t["to"] for t in truth["transitions"]]
    assert got == want
    for g, w in zip(brk[0]["transitions"], truth["transitions"]):
        assert abs(g["ts"] - w["t"]) < 0.010
    assert brk[0]["failure_threshold"] == truth["policy"]["failure_threshold"]
    assert _close(brk[0]["open_s"], truth["policy"]["open_s"] + truth["policy"]["interval_s"])


def test_dns_resend():
    recs, _ = _load("dns-resend")
    c = [r for r in recs if r["kind"] == "dns"]
    assert len(c) == 1 and c[0]["key"].startswith("slow.dissect.test")
    assert _close(c[0]["intervals_s"][0], 1.0)


@pytest.mark.parametrize("name", ["http-keepalive", "ftp-passive", "smtp-two-recipients",
                                  "websocket-echo", "udp-echo", "tls-https-sni"])
def test_no_chain_without_retries(name):
    p = PCAPS / f"{name}.pcap"
    if not p.exists():
        pytest.skip("not committed")
    assert detect_path(str(p))[0] == []


@pytest.mark.parametrize("path", corpus_files("http1")[:6] or
                         [pytest.param(None, marks=pytest.mark.skip(reason="no corpus"))])
def test_no_http_chain_on_plain_corpus_http(path):
    recs, _ = detect_path(str(path))
    assert not [r for r in recs if r["kind"] == "http" and r["type"] == "retry"
                and all(a["outcome"] == 200 for a in r["attempts"])]


def test_classifier_on_generated_series():
    rng = random.Random(5)
    right = total = 0
    for _ in range(200):
        base, factor, n = rng.uniform(0.05, 1.0), rng.uniform(1.6, 3.0), rng.randint(5, 8)
        kind = rng.choice(["constant", "linear", "exponential"])
        if kind == "constant":
            iv = [base * rng.uniform(0.98, 1.02) for _ in range(n)]
        elif kind == "linear":
            iv = [base + i * base * factor for i in range(n)]
        else:
            iv = [base * factor ** i for i in range(n)]
        total += 1
        right += classify(iv)["model"] == kind
    assert right / total >= 0.95
    assert classify([1, 1, 1, 1, 2, 4, 8])["model"] == "linear-then-exponential"
    assert classify([0.5])["confidence"] < 0.5


def test_rto_chain_from_repeated_retransmissions():
    from dissect.analysis.backoff_chains import rto_chains
    conns = [{"id": 0, "client": {"ip": "a", "port": 1}, "server": {"ip": "b", "port": 2}}]
    # original at t=0 (frame 5), retransmitted after 0.2, 0.6, 1.4 s (RTO doubling), plus a
    # capture duplicate 3 us after the first retransmission
    retrans = [(0, 1000, 100, 9, 0.2, 5, 0.0), (0, 1000, 100, 10, 0.200003, 5, 0.0),
               (0, 1000, 100, 20, 0.6, 5, 0.0), (0, 1000, 100, 30, 1.4, 5, 0.0),
               (0, 5000, 100, 40, 2.0, 35, 1.8)]      # a single retransmission: no chain
    chains = rto_chains(retrans, conns)
    assert len(chains) == 1
    c = chains[0]
    assert [a["frame"] for a in c["attempts"]] == [5, 9, 20, 30]
    assert c["intervals_s"] == [0.2, 0.4, 0.8]
    assert c["backoff"]["model"] == "exponential" and c["backoff"]["factor"] == 2.0


def test_classifier_never_divides_by_zero():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=500, deadline=None)
    @given(st.lists(st.floats(0, 100, allow_nan=False), max_size=10))
    def run(iv):
        classify(iv)
    run()
    for iv in ([0, 0, 1, 2], [0, 1], [1, 0, 0], [0, 0, 0]):
        classify(iv)


def test_storm_of_clients_in_lockstep_and_not_with_jitter():
    from dissect.analysis.backoff_chains import _chain, storms

    def chain(start, iv):
        ts, att = start, [{"frame": 1, "ts": start, "outcome": 503}]
        for x in iv:
            ts += x
            att.append({"frame": 1, "ts": ts, "outcome": 503})
        return _chain("http", "c", "s:80", "GET /", att, False)
    lockstep = [chain(10.0 + i * 0.002, [0.5, 1.0, 2.0]) for i in range(5)]
    st = storms(lockstep)
    assert len(st) == 1 and st[0]["clients"] == 5 and st[0]["spread_s"] < 0.01
    assert all("retry-storm" in c["warnings"] for c in lockstep)
    import random
    rng = random.Random(1)
    jittered = [chain(10.0 + i * 0.002, [rng.uniform(0, 0.5), rng.uniform(0, 1), rng.uniform(0, 2)])
                for i in range(5)]
    assert storms(jittered) == []


def test_smtp_and_grpc_chains_from_records():
    from dissect.analysis.backoff_chains import grpc_chains, smtp_chains
    conns = [{"id": 0, "client": {"ip": "a", "port": 1}, "server": {"ip": "b", "port": 25}}]
    envs = [{"type": "smtp-envelope", "conn": 0, "frames": [i], "mail_from": "x@y",
             "rcpt_to": ["z@w"], "reply_code": code, "reply_ts": t}
            for i, (code, t) in enumerate([(451, 0.0), (451, 60.0), (250, 180.0)])]
    c = smtp_chains(envs, conns)
    assert len(c) == 1 and [a["outcome"] for a in c[0]["attempts"]] == [451, 451, 250]
    calls = [{"type": "grpc", "conn": 0, "frames": [i], "path": "/s/M", "grpc_status": st,
              "grpc_status_name": n, "request_ts": t}
             for i, (st, n, t) in enumerate([(14, "UNAVAILABLE", 0.0), (0, "OK", 0.1)])]
    g = grpc_chains(calls, conns)
    assert len(g) == 1 and g[0]["succeeded"] and g[0]["attempts"][0]["outcome"] == "UNAVAILABLE"


@pytest.mark.parametrize("policy,model", [
    ("constant", "constant"), ("linear", "linear"), ("exponential", "exponential"),
    ("equal", "exponential-equal-jitter"), ("full", "exponential-full-jitter"),
    ("decorrelated", "decorrelated-jitter")])
def test_each_policy_of_a_committed_real_run(policy, model):
    recs, truth = _load(f"http-retry-{policy}")
    c = [r for r in recs if r["type"] == "retry"]
    assert len(c) == 1 and c[0]["backoff"]["model"] == model
    att = [r for r in truth["records"] if r["kind"] == "attempt"]
    iv = [b["start"] - a["start"] for a, b in zip(att, att[1:])]
    assert all(_close(x, t) for x, t in zip(c[0]["intervals_s"], iv))
    assert truth["policy"]["jitter"] == policy
