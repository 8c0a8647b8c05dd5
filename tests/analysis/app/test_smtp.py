"""SMTP parser: pairing, pipelining, DATA/BDAT, AUTH, STARTTLS; agreement with tshark."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings

sys.path.insert(0, str(Path(__file__).parent))
from corpus_flows import (
    cut_strategy,
    feed_stream,
    read_capture,
    run_script,
    stream_meta,
)

from dissect.analysis.app import smtp
from dissect.analysis.app.base import CLIENT, SERVER
from tests.conftest import corpus_params, needs_tshark, tshark_fields

BODY = (b"Subject: hi\r\n\r\nline one\r\n..leading dot\r\n.\r\n")   # unstuffed: 41 bytes
SCRIPT = [
    (SERVER, b"220 mx.example ESMTP ready\r\n", 1, 1.0),
    (CLIENT, b"EHLO client.example\r\n", 2, 1.1),
    (SERVER, b"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-AUTH PLAIN LOGIN\r\n"
             b"250 CHUNKING\r\n", 3, 1.2),
    (CLIENT, b"AUTH LOGIN\r\n", 4, 1.3),
    (SERVER, b"334 VXNlcm5hbWU6\r\n", 5, 1.4),
    (CLIENT, b"YWxpY2U=\r\n", 6, 1.5),
    (SERVER, b"334 UGFzc3dvcmQ6\r\n", 7, 1.6),
    (CLIENT, b"c2VjcmV0\r\n", 8, 1.7),
    (SERVER, b"235 ok\r\n", 9, 1.8),
    (CLIENT, b"MAIL FROM:<a@x.example> SIZE=41\r\nRCPT TO:<b@y.example>\r\n"
             b"RCPT TO:<c@z.example>\r\nDATA\r\n", 10, 2.0),
    (SERVER, b"250 ok\r\n250 ok\r\n550 no such user\r\n354 go\r\n", 11, 2.1),
    (CLIENT, BODY, 12, 2.2),
    (SERVER, b"250 queued as 1\r\n", 13, 2.3),
    (CLIENT, b"MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nBDAT 5\r\nhelloBDAT 3 LAST\r\nabc",
     14, 3.0),
    (SERVER, b"250 ok\r\n250 ok\r\n250 5 octets\r\n250 done\r\n", 15, 3.1),
    (CLIENT, b"STARTTLS\r\n", 16, 4.0),
    (SERVER, b"220 go ahead\r\n", 17, 4.1),
    (CLIENT, b"\x16\x03\x01\x02\x00\x01", 18, 4.2),
]


def _records(script=SCRIPT, cuts=None):
    return run_script(smtp.SmtpParser(conn=3, meta={}), script, cuts)


def test_commands_replies_extensions_auth():
    recs = _records()
    cmds = [(r["command"], r["reply_code"]) for r in recs if r["type"] == "smtp"]
    assert cmds == [(None, 220), ("EHLO", 250), ("AUTH", 235), ("MAIL", 250), ("RCPT", 250),
                    ("RCPT", 550), ("DATA", 354), ("MAIL", 250), ("RCPT", 250), ("BDAT", 250),
                    ("BDAT", 250), ("STARTTLS", 220)]
    ehlo = next(r for r in recs if r.get("command") == "EHLO")
    assert ehlo["extensions"] == ["PIPELINING", "SIZE 1000", "AUTH PLAIN LOGIN", "CHUNKING"]
    auth = next(r for r in recs if r.get("command") == "AUTH")
    assert auth["auth_mechanism"] == "LOGIN" and auth["auth_data"] == ["YWxpY2U=", "c2VjcmV0"]
    assert not [r for r in recs if r["type"] == "anomaly"]


def test_envelopes_data_size_unstuffed_and_bdat():
    envs = [r for r in _records() if r["type"] == "smtp-envelope"]
    assert len(envs) == 2
    a, b = envs
    assert a["mail_from"] == "a@x.example" and a["rcpt_to"] == ["b@y.example", "c@z.example"]
    assert a["rcpt_accepted"] == ["b@y.example"]
    assert a["data_bytes"] == len(BODY) - 3 - 1 and a["reply_code"] == 250   # ".\r\n", one dot
    assert b["data_command"] == "BDAT" and b["data_bytes"] == 8 and b["reply_code"] == 250


def test_starttls_stops_and_is_recorded():
    recs = _records()
    assert recs[-1]["type"] == "smtp-starttls"
    assert recs[-1]["extensions"][-1] == "CHUNKING"


@settings(max_examples=60, deadline=None)
@given(cut_strategy(SCRIPT))
def test_records_do_not_depend_on_segmentation(cuts):
    assert _records(cuts=list(cuts)) == _records()


def test_data_rejected_means_following_lines_are_commands():
    script = [(SERVER, b"220 hi\r\n", 1, 0.0),
              (CLIENT, b"MAIL FROM:<a@b>\r\nDATA\r\n", 2, 0.1),
              (SERVER, b"250 ok\r\n", 3, 0.2),
              (CLIENT, b"RSET\r\n", 4, 0.25),     # sent before the reply to DATA arrived
              (SERVER, b"503 need RCPT\r\n250 reset\r\n", 5, 0.3)]
    recs = _records(script)
    assert [(r["command"], r["reply_code"]) for r in recs if r["type"] == "smtp"] == [
        (None, 220), ("MAIL", 250), ("DATA", 503), ("RSET", 250)]
    (env,) = [r for r in recs if r["type"] == "smtp-envelope"]
    assert env["data_bytes"] is None and env["reply_code"] == 503


def test_one_sided_capture_reads_data_after_close():
    script = [(CLIENT, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n", 1, 0.0)]
    recs = _records(script)
    (env,) = [r for r in recs if r["type"] == "smtp-envelope"]
    assert env["data_bytes"] == 7
    assert [r["command"] for r in recs if r["type"] == "smtp"] == ["MAIL", "RCPT", "DATA", "QUIT"]


def test_held_bytes_limit_is_named_and_enforced():
    big = b"x" * (smtp.MAX_HELD_BYTES + 10) + b"\r\n.\r\n"
    script = [(SERVER, b"220 hi\r\n", 1, 0.0), (CLIENT, b"MAIL FROM:<a@b>\r\nDATA\r\n", 2, 0.1),
              (CLIENT, big, 3, 0.2)]
    recs = _records(script)
    assert "smtp-reply-not-seen" in [r["name"] for r in recs if r["type"] == "anomaly"]
    (env,) = [r for r in recs if r["type"] == "smtp-envelope"]
    assert env["data_bytes"] == smtp.MAX_HELD_BYTES + 12


def test_bad_lines_become_anomalies():
    script = [(SERVER, b"220 hi\r\nnot a reply\r\n", 1, 0.0),
              (CLIENT, b"\x80\x81\x82 binary\r\nNOOP\r\n", 2, 0.1),
              (SERVER, b"500 what\r\n250 ok\r\n", 3, 0.2)]
    recs = _records(script)
    assert [r["name"] for r in recs if r["type"] == "anomaly"] == [
        "smtp-bad-reply-line", "smtp-binary-line"]
    assert [(r["command"], r["reply_code"]) for r in recs if r["type"] == "smtp"] == [
        (None, 220), (None, 500), ("NOOP", 250)]


def test_random_bytes_never_raise():
    rng = random.Random(7)
    for _ in range(200):
        p = smtp.SmtpParser(conn=1)
        for i in range(6):
            chunk = rng.choice([rng.randbytes(rng.randint(0, 200)), b"DATA\r\n", b"354 go\r\n",
                                b"BDAT 99999\r\n", b"AUTH PLAIN\r\n", b"334 x\r\n", b".\r\n"])
            p.feed(rng.choice((CLIENT, SERVER)), chunk, i, float(i))
        p.gap(rng.choice((CLIENT, SERVER)), 5, 7, 7.0)
        p.close()


def test_dissect_payload():
    (layer,) = smtp.dissect_payload(b"MAIL FROM:<a@b>\r\n", 66)
    assert layer.protocol == "smtp" and int(layer.osi) == 7
    f = {x.name: x for x in layer.fields}
    assert (f["smtp.req.command"].value, f["smtp.req.command"].offset) == ("MAIL", 66)
    assert (f["smtp.req.parameter"].value, f["smtp.req.parameter"].offset) == ("FROM:<a@b>", 71)
    (layer,) = smtp.dissect_payload(b"250-PIPELINING\r\n250 OK\r\n", 0)
    assert [x.value for x in layer.fields if x.name == "smtp.response.code"] == [250, 250]
    assert smtp.dissect_payload(b"\x16\x03\x01", 0) == []


def test_probe():
    assert smtp.SmtpParser.probe(b"EHLO x\r\n", b"220 mx ESMTP\r\n", 5000, 25) >= 0.9
    assert smtp.SmtpParser.probe(b"", b"+OK POP3\r\n", 5000, 110) == 0.0


# -- corpus agreement with tshark --------------------------------------------------------

@needs_tshark
@pytest.mark.parametrize("path", corpus_params("smtp"))
def test_corpus_commands_match_tshark(path):
    cap = read_capture(path)
    recs = []
    for t in cap.tcp:
        if smtp.SmtpParser.probe(t.head(0), t.head(1), t.client[1], t.server[1]) >= 0.5:
            recs += feed_stream(smtp.SmtpParser(t.id, stream_meta(t)), t)
    mine = sorted((r for r in recs if r["type"] == "smtp" and r["command"]),
                  key=lambda r: r["request_frame"])
    # tshark only names verbs it knows; unknown client lines are anomalies on our side
    ours = [r["command"] for r in mine if r["command"] in smtp.SMTP_COMMANDS]
    rows = tshark_fields(path, ["frame.number", "smtp.req.command"],
                         extra=("-Y", "smtp.req.command"))
    theirs = [c for _f, cmds in rows for c in cmds.split(",") if c]
    if "data-rejected" in path.name:
        # tshark enters message mode after any DATA; this DATA was answered 503 (RFC 2920:
        # then no message follows), so the client's RSET/MAIL/RCPT/DATA are commands to us.
        data503 = next(r for r in mine if r["command"] == "DATA")
        assert data503["reply_code"] == 503
        assert ours[:len(theirs)] == theirs
        assert ours[len(theirs):] == ["RSET", "MAIL", "RCPT", "DATA"]
        return
    # tshark 4.0 shows STARTTLS as "STAR"
    assert len(ours) == len(theirs)
    assert all(o.startswith(t) for o, t in zip(ours, theirs)), list(zip(ours, theirs))
    if "many-addresses" in path.name:
        (env,) = [r for r in recs if r["type"] == "smtp-envelope"]
        assert len(env["rcpt_to"]) == 600 and len(env["rcpt_accepted"]) == 600
    if "starttls" in path.name:
        assert [r["type"] for r in recs][-1] == "smtp-starttls"


@needs_tshark
@pytest.mark.parametrize("path", corpus_params("smtp"))
def test_corpus_reply_codes_match_tshark(path):
    cap = read_capture(path)
    recs = []
    for t in cap.tcp:
        # tshark decodes port 465 as implicit TLS, never as SMTP (smtperr has a plaintext
        # server answering a ClientHello there: we parse it, tshark does not)
        if t.server[1] == 465:
            continue
        if smtp.SmtpParser.probe(t.head(0), t.head(1), t.client[1], t.server[1]) >= 0.5:
            recs += feed_stream(smtp.SmtpParser(t.id, stream_meta(t)), t)
    ours = [r["reply_code"] for r in recs if r["type"] == "smtp" and r["reply_code"]]
    # the reply ending a DATA message is on the envelope; 334 challenges are on the AUTH record
    ours += [r["reply_code"] for r in recs if r["type"] == "smtp-envelope" and r["reply_code"]
             and r["data_command"] == "DATA" and r["data_bytes"] is not None]
    ours += [334 for r in recs if r.get("command") == "AUTH" for _ in r["auth_challenges"]]
    rows = tshark_fields(path, ["smtp.response.code"], extra=("-Y", "smtp.response.code"))
    theirs = sorted(int(c) for (codes,) in rows for c in codes.split(",") if c)
    assert sorted(ours) == theirs


def test_long_message_lines_are_counted_without_loss():
    line = b"y" * (smtp.MAX_DATA_LINE * 2 + 7)
    script = [(SERVER, b"220 hi\r\n", 1, 0.0), (CLIENT, b"MAIL FROM:<a@b>\r\nDATA\r\n", 2, 0.1),
              (SERVER, b"250 ok\r\n354 go\r\n", 3, 0.2),
              (CLIENT, line + b"\r\n.x\r\n.\r\n", 4, 0.3), (SERVER, b"250 ok\r\n", 5, 0.4)]
    (env,) = [r for r in _records(script) if r["type"] == "smtp-envelope"]
    assert env["data_bytes"] == len(line) + 2 + 3      # ".x" unstuffed to "x" + CRLF
