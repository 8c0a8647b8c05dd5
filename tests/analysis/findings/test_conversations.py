"""The conversation table on real captures: model, connection type, transport, reliability
and use, with tshark as the reference for the facts behind them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from conftest import needs_tshark, tshark_fields  # noqa: E402
from engine_helper import PCAPS, corpus, run  # noqa: E402

from dissect.analysis.findings.conversations import conversation_records  # noqa: E402


def rows(path):
    res, table = run(path)
    return conversation_records(res, table)


def one(path):
    (r,) = rows(path)
    return r


def test_websocket_is_persistent_client_server():
    r = one(PCAPS / "websocket-echo.pcap")
    assert (r["model"], r["connection"], r["transport"]) == \
        ("client-server", "persistent", "TCP")
    assert r["server"]["port"] == 80 and "SYN" in r["evidence"]["model"]


def test_udp_echo_is_stateless_request_response():
    r = one(PCAPS / "udp-echo.pcap")
    assert (r["model"], r["connection"], r["transport"], r["use"]) == \
        ("client-server", "stateless request-response", "UDP", "echo (diagnostics)")
    assert "6 datagrams answered by 6" in r["evidence"]["connection"]
    assert r["reliability"] == "no recovery at transport (UDP)"


@needs_tshark
def test_dns_is_a_stateless_name_lookup_with_application_retries():
    path = PCAPS / "dns-resend.pcap"
    r = one(path)
    assert (r["model"], r["connection"], r["use"], r["protocol"]) == \
        ("client-server", "stateless request-response", "name lookup", "dns")
    rx = tshark_fields(path, ["frame.number"],
                       extra=("-Y", "dns.retransmission && dns.flags.response == 0"))
    assert len(rx) == 1
    assert r["reliability"] == "application retries"
    assert r["evidence"]["reliability"].startswith(f"{len(rx)} DNS query retransmission")


def test_https_keepalive_is_persistent_web():
    r = one(PCAPS / "tls-https-sni.pcap")
    assert (r["model"], r["connection"], r["protocol"], r["use"]) == \
        ("client-server", "persistent", "tls", "web (HTTPS)")
    assert r["evidence"]["connection"].startswith("5 encrypted request/response exchanges")


def test_ftp_control_persistent_and_data_connections_one_shot():
    rs = rows(PCAPS / "ftp-passive.pcap")
    ctl = [r for r in rs if r["protocol"] == "ftp"]
    data = [r for r in rs if r["protocol"] == "ftp-data"]
    assert len(ctl) == 1 and len(data) == 3
    assert ctl[0]["connection"] == "persistent" and ctl[0]["use"] == "file transfer (control)"
    assert all(d["connection"] == "stateless request-response"
               and d["use"] == "file transfer (data)" for d in data)


def test_smtp_is_mail():
    r = one(PCAPS / "smtp-two-recipients.pcap")
    assert (r["use"], r["connection"]) == ("mail (sending)", "persistent")


@needs_tshark
def test_tcp_retransmissions_reported_as_tcp_analysis_counts_them():
    path = PCAPS / "http-keepalive-loss.pcap"
    r = one(path)
    n = len(tshark_fields(path, ["frame.number"], extra=("-Y", "tcp.analysis.retransmission")))
    assert n > 0
    assert r["reliability"] == "retransmissions"
    assert r["evidence"]["reliability"].startswith(f"{n} TCP retransmission")


def test_rtp_after_stun_between_ephemeral_ports_is_peer_to_peer():
    r = one(corpus("webrtc/ntop+nDPI__tests_cfgs_default_pcap_stun_classic.pcap"))
    assert (r["model"], r["connection"], r["transport"], r["use"]) == \
        ("peer-to-peer", "persistent", "UDP", "media streaming (voice/video)")
    ev = r["evidence"]["model"]
    assert "STUN connectivity check, then RTP" in ev and "both ways" in ev
    assert r["client"]["port"] >= 1024 and r["server"]["port"] >= 1024


@needs_tshark
def test_rtp_through_turn_relay_is_client_server_with_loss_from_sequence_numbers():
    path = corpus("webrtc/ntop+nDPI__tests_cfgs_default_pcap_stun_wa_call.pcapng")
    rs = rows(path)
    rtp = [r for r in rs if r["protocol"] == "rtp"]
    relay = [r for r in rtp if r["server"]["port"] == 3478]
    direct = [r for r in rtp if r["server"]["port"] != 3478]
    # media relayed through the TURN service is client-server; the call also went direct
    # between the two phones' ephemeral ports after a STUN check: peer-to-peer
    assert relay and all(r["model"] == "client-server" for r in relay)
    assert direct and all(r["model"] == "peer-to-peer" for r in direct)
    assert all("STUN connectivity check, then RTP" in r["evidence"]["model"] for r in direct)
    lost = [r for r in relay if r["reliability"] == "loss seen"]
    assert len(lost) == 1 and "1 of" in lost[0]["evidence"]["reliability"]


def test_every_row_has_evidence_for_every_column():
    for p in sorted(PCAPS.glob("*.pcap")):
        for r in rows(p):
            assert r["type"] == "conversation"
            assert set(r["evidence"]) == {"model", "connection", "transport", "reliability", "use"}
            assert all(r["evidence"].values())
            assert r["model"] in ("client-server", "peer-to-peer")
            assert r["connection"] in ("stateless request-response", "persistent")
            assert r["transport"] in ("TCP", "UDP", "QUIC")


@pytest.mark.parametrize("rel", ["quic/"])
def test_quic_flows_are_quic_transport(rel):
    from conftest import corpus_files
    files = corpus_files("quic")
    if not files:
        pytest.skip("corpus not present")
    seen = 0
    for f in files[:4]:
        res, table = run(f)
        quic_conns = {r["conn"] for r in res.records if r.get("type") == "quic"}
        for r in conversation_records(res, table):
            if r["conn"] in quic_conns:
                assert r["transport"] == "QUIC" and r["use"] == "web (HTTP/3 over QUIC)"
                seen += 1
    if not seen:
        pytest.skip("no QUIC records from the stand-in dispatcher (needs the real one)")


def test_limit_gives_the_first_conversations():
    names = ("http-tiers.pcap", "ftp-passive.pcap", "http-retry-exponential.pcap")
    for name in names:
        res, table = run(PCAPS / name)
        full = conversation_records(res, table)
        assert len(full) >= 3, name
        for n in (0, 1, 2, len(full), len(full) + 5):
            assert conversation_records(res, table, limit=n) == full[:n], (name, n)
