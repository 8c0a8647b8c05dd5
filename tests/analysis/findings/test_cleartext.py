"""Cleartext credentials and weak encryption: real captures (lab pcaps and the corpus)
with tshark as the reference for what was on the wire."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from conftest import needs_tshark, tshark_fields  # noqa: E402
from engine_helper import PCAPS, corpus, run, script_records  # noqa: E402

from dissect.analysis.findings.cleartext import (  # noqa: E402
    classify_suite, cleartext_findings, mask, normalise_version, sasl_plain)
from dissect.analysis.app.smtp import SmtpParser  # noqa: E402
from dissect.analysis.app.imap import ImapParser  # noqa: E402


class _Res:
    def __init__(self, records, connections=()):
        self.records = records
        self.connections = list(connections)


def findings(path, show=False):
    res, _ = run(path)
    return cleartext_findings(res, show_secrets=show)


def creds(fs):
    return [f for f in fs if f["kind"] in ("cleartext-password", "cleartext-token",
                                           "cleartext-cookie", "challenge-response-login")]


# -- masking --------------------------------------------------------------------------------

def test_mask_never_shows_value_or_length():
    assert mask("lab-password") == "l****d"
    assert mask("12345678") == "1****8"
    for short in ("a", "ab", "secret", "1234567"):
        assert mask(short) == "****"
    # same mask for different lengths: the length is not revealed
    assert mask("x" * 9) == mask("x" * 90)
    assert mask(None) is None


# -- FTP ------------------------------------------------------------------------------------

@needs_tshark
@pytest.mark.parametrize("name", ["ftp-active.pcap", "ftp-passive.pcap"])
def test_ftp_user_pass_is_one_masked_high_finding(name):
    path = PCAPS / name
    fs = findings(path)
    pw = [f for f in fs if f["kind"] == "cleartext-password"]
    assert len(pw) == 1
    f = pw[0]
    assert f["severity"] == "high" and f["protocol"] == "ftp"
    rows = tshark_fields(path, ["frame.number", "ftp.request.command", "ftp.request.arg"],
                         extra=("-Y", "ftp.request.command == \"PASS\""))
    assert len(rows) == 1
    frame, _cmd, password = int(rows[0][0]), rows[0][1], rows[0][2]
    assert frame in f["frames"]
    assert f["secret"] == mask(password) and f["secret"] != password
    assert password not in f["detail"]
    shown = [x for x in findings(path, show=True) if x["kind"] == "cleartext-password"]
    assert shown[0]["secret"] == password
    # three data connections (LIST, RETR, STOR) carry their content in the clear
    data = [x for x in fs if x["kind"] == "cleartext-file-transfer"]
    assert sorted(x["detail"].split(" for ")[1].split()[0] for x in data) == \
        ["LIST", "RETR", "STOR"]


@needs_tshark
def test_ftp_bruteforce_one_finding_per_pass_command():
    path = corpus("ftp/zeek+zeek__testing_btest_Traces_ftp_bruteforce.pcap")
    fs = [f for f in findings(path, show=True) if f["kind"] == "cleartext-password"]
    rows = tshark_fields(path, ["frame.number", "ftp.request.arg"],
                         extra=("-Y", "ftp.request.command == \"PASS\""))
    assert len(fs) == len(rows) == 30
    by_frame = {int(r[0]): r[1] for r in rows}
    for f in fs:
        assert any(by_frame.get(fr) == f["secret"] for fr in f["frames"])
        assert "530" in f["detail"]            # every attempt was rejected


def test_ftp_anonymous_login_is_info_not_a_password():
    path = corpus("ftp/zeek+zeek__testing_btest_Traces_ftp_retr.pcap")
    fs = findings(path)
    ftp = [f for f in fs if f["protocol"] == "ftp"]
    assert [(f["kind"], f["severity"]) for f in ftp] == [("anonymous-login", "info")]
    assert creds(fs) == []


# -- POP3 / SMTP / IMAP ---------------------------------------------------------------------

@needs_tshark
@pytest.mark.parametrize("rel", ["pop3/OISF+suricata-verify__tests_pop3_input.pcap",
                                 "pop3/OISF+suricata-verify__tests_pop3-02-bug-7709_input.pcap",
                                 "pop3/zeek+zeek__testing_btest_Traces_pop3-unknown-commands.pcap"])
def test_pop3_user_pass_agrees_with_tshark(rel):
    path = corpus(rel)
    fs = [f for f in findings(path, show=True) if f["kind"] == "cleartext-password"]
    rows = tshark_fields(path, ["frame.number", "pop.request.parameter"],
                         extra=("-Y", "pop.request.command == \"PASS\""))
    assert len(fs) == len(rows) >= 1
    assert sorted(f["secret"] for f in fs) == sorted(r[1] for r in rows)
    assert all(f["severity"] == "high" and f["protocol"] == "pop3" for f in fs)
    masked = [f["secret"] for f in findings(path) if f["kind"] == "cleartext-password"]
    assert not set(masked) & {r[1] for r in rows}


@needs_tshark
def test_smtp_auth_login_base64_decoded_agrees_with_tshark():
    path = corpus("smtp/OISF+suricata-verify__tests_mime_mime-quoted-printable_input.pcap")
    fs = [f for f in findings(path, show=True) if f["kind"] == "cleartext-password"]
    rows = tshark_fields(path, ["smtp.auth.username", "smtp.auth.password"],
                         extra=("-Y", "smtp.auth.username || smtp.auth.password"))
    user = base64.b64decode(next(r[0] for r in rows if r[0])).decode()
    pw = base64.b64decode(next(r[1] for r in rows if r[1])).decode()
    assert len(fs) == 1
    assert fs[0]["secret"] == pw and user in fs[0]["detail"] and "LOGIN" in fs[0]["detail"]


def test_smtp_auth_plain_and_imap_login_from_real_parsers():
    # a scripted session through the real SMTP parser: AUTH PLAIN with an initial response
    tok = base64.b64encode(b"\x00alice\x00s3cr3t-pw").decode()
    p = SmtpParser(0, {})
    recs = []
    for d, data in ((1, b"220 mx ESMTP\r\n"), (0, b"EHLO c\r\n"),
                    (1, b"250-mx\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n"),
                    (0, f"AUTH PLAIN {tok}\r\n".encode()), (1, b"235 ok\r\n"),
                    (0, b"QUIT\r\n"), (1, b"221 bye\r\n")):
        recs += p.feed(d, data, len(recs) + 1, 1.0)
    recs += p.close(2.0)
    for r in recs:
        r.setdefault("conn", 0)
        if r.get("conn") is None:
            r["conn"] = 0
    fs = cleartext_findings(_Res(recs), show_secrets=True)
    pw = [f for f in fs if f["kind"] == "cleartext-password"]
    assert len(pw) == 1 and pw[0]["secret"] == "s3cr3t-pw" and "alice" in pw[0]["detail"]
    # the server offered STARTTLS and the client authenticated in cleartext anyway
    assert [f["protocol"] for f in fs if f["kind"] == "starttls-not-used"] == ["smtp"]
    # IMAP LOGIN with a quoted password containing a space and an escaped quote
    q = ImapParser(1, {})
    recs = []
    for d, data in ((1, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"),
                    (0, b'a1 LOGIN bob "pa ss\\"word"\r\n'), (1, b"a1 OK done\r\n")):
        recs += q.feed(d, data, len(recs) + 1, 1.0)
    recs += q.close(2.0)
    for r in recs:
        if r.get("conn") is None:
            r["conn"] = 1
    fs = cleartext_findings(_Res(recs), show_secrets=True)
    pw = [f for f in fs if f["kind"] == "cleartext-password"]
    assert len(pw) == 1 and pw[0]["secret"] == 'pa ss"word' and "bob" in pw[0]["detail"]
    assert [f["protocol"] for f in fs if f["kind"] == "starttls-not-used"] == ["imap"]


def test_sasl_plain_decoding():
    assert sasl_plain(base64.b64encode(b"authz\x00u\x00p").decode()) == ("u", "p")
    assert sasl_plain("not base64!") == (None, None)
    assert sasl_plain(base64.b64encode(b"no separators").decode()) == (None, None)


# -- STARTTLS -------------------------------------------------------------------------------

@needs_tshark
@pytest.mark.parametrize("rel", [
    "smtp/zeek+zeek__testing_btest_Traces_smtp-multi-addr.pcap",
    "smtp/zeek+zeek__testing_btest_Traces_smtp_rfc3030-bdat-multipart.pcap"])
def test_smtp_starttls_offered_but_not_used(rel):
    path = corpus(rel)
    fs = [f for f in findings(path) if f["kind"] == "starttls-not-used"]
    offered = tshark_fields(path, ["frame.number"],
                            extra=("-Y", 'smtp.rsp.parameter contains "STARTTLS"'))
    used = tshark_fields(path, ["frame.number"],
                         extra=("-Y", 'smtp.req.command == "STARTTLS"'))
    assert offered and not used
    assert len(fs) == 1 and fs[0]["severity"] == "medium"
    assert int(offered[0][0]) in fs[0]["frames"]


def test_smtp_starttls_used_is_not_a_finding():
    path = corpus("smtp/zeek+zeek__testing_btest_Traces_tls_smtp-starttls.pcap")
    assert [f for f in findings(path) if f["kind"] == "starttls-not-used"] == []


def test_smtp_lab_server_without_starttls_is_not_a_finding():
    # aiosmtpd in the lab offers no STARTTLS: nothing was offered, nothing to report
    assert findings(PCAPS / "smtp-two-recipients.pcap") == []


# -- no credentials where there are none ----------------------------------------------------

@pytest.mark.parametrize("name", ["http-keepalive.pcap", "dns-resend.pcap", "udp-echo.pcap",
                                  "websocket-echo.pcap", "tls-https-sni.pcap", "grpc-h2c.pcap",
                                  "smtp-two-recipients.pcap", "tcp-syn-backoff-classic.pcap"])
def test_no_credential_finding_on_lab_captures_without_credentials(name):
    assert creds(findings(PCAPS / name)) == []


@pytest.mark.parametrize("rel", [
    "http1/zeek+zeek__testing_btest_Traces_http_get-gzip.pcap",
    "dns/OISF+suricata-verify__tests_sip-method_sip.pcap",
    "tls/ntop+nDPI__tests_cfgs_default_pcap_443-git.pcap",
    "webrtc/ntop+nDPI__tests_cfgs_default_pcap_stun_classic.pcap",
    "imap/zeek+zeek__testing_btest_Traces_tls_telesec.pcap",
    "smtp/zeek+zeek__testing_btest_Traces_smtp-multi-addr.pcap",
    "ftp/zeek+zeek__testing_btest_Traces_ftp_ftp-auth-tls.pcap"])
def test_no_credential_finding_on_corpus_captures_without_credentials(rel):
    path = corpus(rel)
    assert creds(findings(path)) == []


def test_imap_one_direction_only_has_no_login_to_show():
    # only the server's side was captured: the LOGIN command (and its password) is absent
    path = corpus("imap/OISF+suricata-verify__tests_tcp-async-01_input.pcap")
    assert creds(findings(path)) == []


# -- TLS classification ---------------------------------------------------------------------

def test_weak_cipher_suite_rules():
    assert classify_suite("TLS_RSA_WITH_RC4_128_SHA", "TLS1.2")[0] == "high"
    assert classify_suite(0x0004, "TLS1.2")[1].startswith("RC4")
    assert classify_suite("TLS_RSA_EXPORT_WITH_DES40_CBC_SHA", None)[0] == "high"
    assert classify_suite("TLS_DH_anon_WITH_AES_128_CBC_SHA", None)[0] == "high"
    assert classify_suite("TLS_RSA_WITH_NULL_SHA256", None)[0] == "high"
    assert classify_suite("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", None)[0] == "medium"
    assert classify_suite("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS1.0")[0] == "medium"
    assert classify_suite("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS1.2") is None
    assert classify_suite("TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS1.2")[0] == "medium"
    assert classify_suite("TLS_AES_128_GCM_SHA256", "TLS1.3") is None
    assert classify_suite("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS1.2") is None
    assert normalise_version(0x0301) == "TLS1.0" and normalise_version("TLS 1.1") == "TLS1.1"
    assert normalise_version("0x0304") == "TLS1.3" and normalise_version("bogus") is None


def test_weak_tls_findings_from_tls_records():
    recs = [{"type": "tls", "conn": 3, "frames": [4, 6], "version": "TLS 1.0",
             "cipher_suite": "TLS_RSA_WITH_RC4_128_MD5"},
            {"type": "tls", "conn": 4, "frames": [9], "version": 0x0304,
             "cipher_suite": "TLS_AES_256_GCM_SHA384"}]
    fs = cleartext_findings(_Res(recs))
    assert sorted((f["conn"], f["kind"], f["severity"]) for f in fs) == [
        (3, "weak-cipher-suite", "high"), (3, "weak-tls-version", "medium")]


def test_http_basic_bearer_cookie_from_header_records():
    basic = base64.b64encode(b"carol:hunter22").decode()
    recs = [{"type": "http", "conn": 0, "frames": [4], "method": "GET",
             "request_headers": [["Authorization", f"Basic {basic}"], ["Cookie", "sid=abcdef123"]]},
            {"type": "http", "conn": 1, "frames": [9],
             "headers": {"authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"}}]
    fs = cleartext_findings(_Res(recs), show_secrets=False)
    kinds = sorted((f["conn"], f["kind"]) for f in fs)
    assert kinds == [(0, "cleartext-cookie"), (0, "cleartext-password"), (1, "cleartext-token")]
    basic_f = next(f for f in fs if f["kind"] == "cleartext-password")
    assert "carol" in basic_f["detail"] and basic_f["secret"] == "h****2"
    shown = cleartext_findings(_Res(recs), show_secrets=True)
    assert next(f for f in shown if f["kind"] == "cleartext-password")["secret"] == "hunter22"


def _script(parser, conn, script) -> list:
    return script_records(parser, conn, script)


def test_imap_authenticate_plain_and_pop3_apop_through_real_parsers():
    from dissect.analysis.app.pop3 import Pop3Parser
    tok = base64.b64encode(b"\x00dave\x00imap-secret").decode()
    recs = _script(ImapParser(1, {}), 1, [
        (1, b"* OK ready\r\n"), (0, b"a2 AUTHENTICATE PLAIN\r\n"), (1, b"+ \r\n"),
        (0, (tok + "\r\n").encode()), (1, b"a2 OK done\r\n")])
    (f,) = cleartext_findings(_Res(recs), show_secrets=True)
    assert (f["kind"], f["secret"], f["protocol"]) == ("cleartext-password", "imap-secret", "imap")
    assert "dave" in f["detail"] and 4 in f["frames"]
    digest = "c4c9334bac560ecc979e58001b3e22fb"
    recs = _script(Pop3Parser(2, {}), 2, [
        (1, b"+OK POP3 <1896.697170952@dbc.mtview.ca.us>\r\n"),
        (0, f"APOP mrose {digest}\r\n".encode()), (1, b"+OK maildrop\r\n")])
    (f,) = cleartext_findings(_Res(recs))
    assert (f["kind"], f["severity"]) == ("challenge-response-login", "medium")
    assert f["secret"] == mask(digest) and digest not in f["detail"]


@needs_tshark
@pytest.mark.parametrize("rel", ["http1/ntop+nDPI__tests_cfgs_default_pcap_webdav.pcap",
                                 "http1/zeek+zeek__testing_btest_Traces_http_methods.pcap"])
def test_http_authorization_and_cookies_agree_with_tshark(rel):
    path = corpus(rel)
    res, _ = run(path)
    if not any(r.get("type") == "http" for r in res.records):
        pytest.skip("no HTTP records: needs the HTTP parser (dissect.analysis.app.http)")
    fs = cleartext_findings(res)
    auth = tshark_fields(path, ["frame.number"], extra=("-Y", "http.authorization"))
    cookies = tshark_fields(path, ["frame.number", "http.cookie", "http.set_cookie"],
                            extra=("-Y", "http.cookie || http.set_cookie"))
    got_auth = [f for f in fs if f["kind"] in ("cleartext-password", "cleartext-token",
                                              "challenge-response-login")]
    got_cookie = [f for f in fs if f["kind"] == "cleartext-cookie"]
    # every header tshark shows is covered by a finding on the record that carried it
    assert all(any(int(a[0]) in f["frames"] for f in got_auth) for a in auth)
    assert all(any(int(c[0]) in f["frames"] for f in got_cookie) for c in cookies)
    assert len(got_auth) >= len(auth) and len(got_cookie) >= len(cookies)
    assert all(f["secret"] is None or len(f["secret"]) <= 6 for f in got_auth + got_cookie)
