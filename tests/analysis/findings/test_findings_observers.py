"""The conversation table and the cleartext findings as observers of one pass over a run's
records: they keep no record (nor a list or dict taken out of one), they give what their
wrapper functions give, and they read the records once, as a stream."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from engine_helper import CORPUS, PCAPS, run, script_records  # noqa: E402

from dissect.analysis.app.imap import ImapParser  # noqa: E402
from dissect.analysis.app.pop3 import Pop3Parser  # noqa: E402
from dissect.analysis.app.smtp import SmtpParser  # noqa: E402
from dissect.analysis.findings.cleartext import CleartextObserver, cleartext_findings  # noqa: E402
from dissect.analysis.findings.conversations import (  # noqa: E402
    ConversationObserver, conversation_records)
from dissect.analysis.observe import observe  # noqa: E402

LAB = ["ftp-active.pcap", "ftp-passive.pcap", "http-keepalive.pcap", "http-tiers.pcap",
       "tls-https-sni.pcap", "smtp-two-recipients.pcap", "dns-resend.pcap", "udp-echo.pcap",
       "websocket-echo.pcap", "grpc-h2c.pcap", "tcp-syn-backoff-classic.pcap"]
# corpus captures with the record types the lab ones lack (RTP/STUN, POP3, IMAP, SMTP
# STARTTLS offers, HTTP credentials and cookies, TLS); skipped when the corpus is absent
CORPUS_FILES = ["webrtc/ntop+nDPI__tests_cfgs_default_pcap_stun_classic.pcap",
                "webrtc/ntop+nDPI__tests_cfgs_default_pcap_stun_wa_call.pcapng",
                "pop3/OISF+suricata-verify__tests_pop3_input.pcap",
                "imap/zeek+zeek__testing_btest_Traces_tls_telesec.pcap",
                "smtp/zeek+zeek__testing_btest_Traces_smtp-multi-addr.pcap",
                "http1/ntop+nDPI__tests_cfgs_default_pcap_webdav.pcap",
                "ftp/zeek+zeek__testing_btest_Traces_ftp_bruteforce.pcap",
                "tls/ntop+nDPI__tests_cfgs_default_pcap_443-git.pcap"]


def _capture(rel: str) -> Path:
    p = PCAPS / rel if "/" not in rel else CORPUS / rel
    if not p.exists():
        pytest.skip(f"{rel} not present")
    return p


class _Res:
    """A result of hand-made records."""

    def __init__(self, records, connections=()):
        self.records = list(records)
        self.connections = list(connections)


class _Stream:
    """A result whose records can be read once only (as from disk)."""

    def __init__(self, res):
        self.connections = iter(list(res.connections))
        self.records = iter(list(res.records))


def _containers(x, depth: int = 3) -> list:
    """The lists and dicts inside record ``x``, ``depth`` levels down."""
    out = []
    for v in (x.values() if isinstance(x, dict) else x):
        if isinstance(v, (list, dict)):
            out.append(v)
            if depth > 1:
                out += _containers(v, depth - 1)
    return out


def _watched(records) -> list:
    """Every record and every list/dict inside one."""
    objs = []
    for r in records:
        objs.append(r)
        objs += _containers(r)
    return objs


def _refs(objs) -> list:
    return [sys.getrefcount(o) for o in objs]


def _script(parser, conn, script) -> list:
    return script_records(parser, conn, script)


def _mail_records() -> list:
    """Records of real parsers for the cleartext paths that keep per-connection facts:
    SMTP AUTH after a STARTTLS offer, IMAP LOGIN after a STARTTLS capability, POP3
    USER/PASS and APOP, POP3 CAPA offering STLS; and HTTP credentials and weak TLS."""
    tok = base64.b64encode(b"\x00alice\x00s3cr3t-pw").decode()
    recs = _script(SmtpParser(0, {}), 0, [
        (1, b"220 mx ESMTP\r\n"), (0, b"EHLO c\r\n"),
        (1, b"250-mx\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n"),
        (0, f"AUTH PLAIN {tok}\r\n".encode()), (1, b"235 ok\r\n"),
        (0, b"QUIT\r\n"), (1, b"221 bye\r\n")])
    recs += _script(ImapParser(1, {}), 1, [
        (1, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"),
        (0, b'a1 LOGIN bob "pa ss\\"word"\r\n'), (1, b"a1 OK done\r\n")])
    recs += _script(Pop3Parser(2, {}), 2, [
        (1, b"+OK POP3 <1896.697170952@dbc.mtview.ca.us>\r\n"), (0, b"CAPA\r\n"),
        (1, b"+OK\r\nUSER\r\nSTLS\r\n.\r\n"), (0, b"USER carol\r\n"), (1, b"+OK\r\n"),
        (0, b"PASS pop-secret\r\n"), (1, b"+OK maildrop\r\n"),
        (0, b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"), (1, b"-ERR\r\n")])
    basic = base64.b64encode(b"carol:hunter22").decode()
    recs += [{"type": "http", "conn": 3, "frames": [4], "method": "GET",
              "request_headers": [["Authorization", f"Basic {basic}"],
                                  ["Cookie", "sid=abcdef123"]]},
             {"type": "http", "conn": 4, "frames": [9],
              "headers": {"authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"}},
             {"type": "tls", "conn": 5, "frames": [4, 6], "version": "TLS 1.0",
              "cipher_suite": "TLS_RSA_WITH_RC4_128_MD5"},
             # the POP3 parser counts CAPA's lines; a record listing them offers STLS
             {"type": "pop3", "conn": 6, "frames": [2, 3], "command": "CAPA",
              "capabilities": ["USER", "STLS"]},
             {"type": "pop3", "conn": 6, "frames": [4, 5], "command": "USER", "arg": "dave"}]
    return recs


# -- the observers keep no record -----------------------------------------------------------

@pytest.mark.parametrize("rel", LAB + CORPUS_FILES)
def test_observers_keep_no_record_nor_anything_taken_out_of_one(rel):
    res, table = run(_capture(rel))
    records = list(res.connections) + list(res.records)
    objs = _watched(records)
    before = _refs(objs)
    observers = [ConversationObserver(), ConversationObserver(table),
                 ConversationObserver(limit=2), ConversationObserver(table, limit=1),
                 CleartextObserver(), CleartextObserver(show_secrets=True)]
    out = observe(res, observers)
    # the results too hold nothing of the records (they are alive while counting)
    assert _refs(objs) == before
    assert out[0] == conversation_records(res) and out[4] == cleartext_findings(res)


def test_cleartext_observer_keeps_no_record_of_mail_http_and_tls_sessions():
    recs = _mail_records()
    objs = _watched(recs)
    before = _refs(objs)
    out = observe(_Res(recs), [CleartextObserver(show_secrets=True)])[0]
    assert _refs(objs) == before
    kinds = sorted((f["conn"], f["kind"]) for f in out)
    assert kinds == [(0, "cleartext-password"), (0, "starttls-not-used"),
                     (1, "cleartext-password"), (1, "starttls-not-used"),
                     (2, "challenge-response-login"), (2, "cleartext-password"),
                     (3, "cleartext-cookie"), (3, "cleartext-password"),
                     (4, "cleartext-token"), (5, "weak-cipher-suite"),
                     (5, "weak-tls-version"), (6, "starttls-not-used")]
    assert next(f["secret"] for f in out if f["conn"] == 2
                and f["kind"] == "cleartext-password") == "pop-secret"


def test_cleartext_keeps_nothing_for_connections_without_findings():
    res, _ = run(PCAPS / "http-keepalive.pcap")
    obs = CleartextObserver()
    assert observe(res, [obs]) == [[]]
    assert obs._conns == {} and obs._data == []


# -- the observers give what the wrappers give ----------------------------------------------

@pytest.mark.parametrize("rel", LAB + CORPUS_FILES)
def test_one_shared_pass_gives_what_the_wrappers_give(rel):
    res, table = run(_capture(rel))
    convs = conversation_records(res)
    observers = [ConversationObserver(), ConversationObserver(table),
                 ConversationObserver(limit=3), CleartextObserver(),
                 CleartextObserver(show_secrets=True)]
    got = observe(_Stream(res), observers)
    assert got == [convs, conversation_records(res, table), convs[:3],
                   cleartext_findings(res), cleartext_findings(res, show_secrets=True)]
    n = sum(1 for c in res.connections if c.get("type", "connection") == "connection")
    assert all(o.count == n for o in observers[:3])


def test_conversation_limit_keeps_only_the_first_connections():
    res, table = run(PCAPS / "ftp-passive.pcap")
    full = conversation_records(res, table)
    for n in (0, 1, 2):
        obs = ConversationObserver(table, limit=n)
        assert observe(_Stream(res), [obs]) == [full[:n]]
        assert obs.count == len(full)
        assert len(obs._recs) <= n


def test_wrappers_read_the_records_once():
    res, table = run(PCAPS / "smtp-two-recipients.pcap")
    assert conversation_records(_Stream(res), table) == conversation_records(res, table)
    assert conversation_records(_Stream(res), limit=1) == conversation_records(res)[:1]
    recs = _mail_records()
    assert cleartext_findings(_Stream(_Res(recs))) == cleartext_findings(_Res(recs))
