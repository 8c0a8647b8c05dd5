"""POP3 parser: status lines, multi-line responses, AUTH, STLS; agreement with tshark."""

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

from dissect.analysis.app import pop3
from dissect.analysis.app.base import CLIENT, SERVER
from tests.conftest import corpus_params, needs_tshark, tshark_fields

MESSAGE = b"Subject: x\r\n\r\n..dot line\r\nbody\r\n.\r\n"
SCRIPT = [
    (SERVER, b"+OK POP3 ready <1.2@host>\r\n", 1, 1.0),
    (CLIENT, b"CAPA\r\n", 2, 1.1),
    (SERVER, b"+OK caps\r\nUSER\r\nSTLS\r\nUIDL\r\n.\r\n", 3, 1.2),
    (CLIENT, b"USER bob\r\n", 4, 1.3),
    (SERVER, b"+OK\r\n", 5, 1.4),
    (CLIENT, b"PASS hunter2\r\n", 6, 1.5),
    (SERVER, b"+OK logged in\r\n", 7, 1.6),
    (CLIENT, b"LIST\r\nLIST 1\r\nRETR 1\r\n", 8, 1.7),
    (SERVER, b"+OK 1 messages\r\n1 120\r\n.\r\n+OK 1 120\r\n+OK 120 octets\r\n" + MESSAGE, 9, 1.8),
    (CLIENT, b"DELE 9\r\n", 10, 1.9),
    (SERVER, b"-ERR no such message\r\n", 11, 2.0),
    (CLIENT, b"AUTH PLAIN\r\n", 12, 2.1),
    (SERVER, b"+ \r\n", 13, 2.2),
    (CLIENT, b"AGJvYgBodW50ZXIy\r\n", 14, 2.3),
    (SERVER, b"+OK auth done\r\n", 15, 2.4),
    (CLIENT, b"STLS\r\n", 16, 2.5),
    (SERVER, b"+OK begin TLS\r\n", 17, 2.6),
    (CLIENT, b"\x16\x03\x01\x00\x10", 18, 2.7),
]


def _records(script=SCRIPT, cuts=None):
    return run_script(pop3.Pop3Parser(conn=2), script, cuts)


def test_commands_statuses_and_multiline_sizes():
    recs = [r for r in _records() if r["type"] == "pop3"]
    assert [(r["command"], r["arg"], r["status"]) for r in recs] == [
        (None, None, "+OK"), ("CAPA", "", "+OK"), ("USER", "bob", "+OK"),
        ("PASS", "hunter2", "+OK"), ("LIST", "", "+OK"), ("LIST", "1", "+OK"),
        ("RETR", "1", "+OK"), ("DELE", "9", "-ERR"), ("AUTH", "PLAIN", "+OK"),
        ("STLS", "", "+OK")]
    by = {(r["command"], r["arg"]): r for r in recs}
    assert by[("CAPA", "")]["lines"] == 3
    assert by[("LIST", "")]["lines"] == 1 and by[("LIST", "1")]["lines"] is None
    retr = by[("RETR", "1")]
    assert retr["lines"] == 4 and retr["bytes"] == len(MESSAGE) - 3 - 1   # ".\r\n", one dot
    assert by[("AUTH", "PLAIN")]["auth_data"] == ["AGJvYgBodW50ZXIy"]
    assert by[("STLS", "")]["tls"] is True
    assert by[("USER", "bob")]["response_time_s"] == pytest.approx(0.1)


@settings(max_examples=60, deadline=None)
@given(cut_strategy(SCRIPT))
def test_records_do_not_depend_on_segmentation(cuts):
    assert _records(cuts=list(cuts)) == _records()


def test_bad_status_line_and_unfinished_response_are_anomalies():
    script = [(SERVER, b"+OK hi\r\n", 1, 0.0), (CLIENT, b"STAT\r\n", 2, 0.1),
              (SERVER, b"garbage\r\n+OK 1 2\r\n", 3, 0.2), (CLIENT, b"RETR 1\r\n", 4, 0.3),
              (SERVER, b"+OK\r\npartial message\r\n", 5, 0.4)]
    recs = _records(script)
    assert [r["name"] for r in recs if r["type"] == "anomaly"] == [
        "pop3-bad-status-line", "pop3-response-incomplete"]
    assert [(r["command"], r["status"]) for r in recs if r["type"] == "pop3"] == [
        (None, "+OK"), ("STAT", "+OK"), ("RETR", "+OK")]


def test_random_bytes_never_raise():
    rng = random.Random(3)
    for _ in range(200):
        p = pop3.Pop3Parser(conn=1)
        for i in range(6):
            chunk = rng.choice([rng.randbytes(rng.randint(0, 200)), b"RETR 1\r\n", b"+OK\r\n",
                                b"AUTH X\r\n", b"+ \r\n", b".\r\n", b"-ERR\r\n"])
            p.feed(rng.choice((CLIENT, SERVER)), chunk, i, float(i))
        p.gap(rng.choice((CLIENT, SERVER)), 5, 7, 7.0)
        p.close()


def test_dissect_payload():
    (layer,) = pop3.dissect_payload(b"RETR 12\r\n", 40)
    assert layer.protocol == "pop3" and int(layer.osi) == 7
    f = {x.name: x for x in layer.fields}
    assert (f["pop.request.command"].value, f["pop.request.command"].offset) == ("RETR", 40)
    assert (f["pop.request.parameter"].value, f["pop.request.parameter"].offset) == ("12", 45)
    (layer,) = pop3.dissect_payload(b"+OK 2 320\r\n", 0)
    assert layer.get("pop.response.indicator") == "+OK"
    assert pop3.dissect_payload(b"220 smtp\r\n", 0) == []


@needs_tshark
@pytest.mark.parametrize("path", corpus_params("pop3"))
def test_corpus_commands_and_statuses_match_tshark(path):
    cap = read_capture(path)
    recs = []
    for t in cap.tcp:
        if pop3.Pop3Parser.probe(t.head(0), t.head(1), t.client[1], t.server[1]) >= 0.5:
            recs += feed_stream(pop3.Pop3Parser(t.id, stream_meta(t)), t)
    mine = [r for r in recs if r["type"] == "pop3"]
    ours = [r["command"] for r in sorted((r for r in mine if r["command"]),
                                         key=lambda r: r["request_frame"])]
    rows = tshark_fields(path, ["pop.request.command"], extra=("-Y", "pop.request.command"))
    theirs = [c.upper() for (cmds,) in rows for c in cmds.split(",") if c]
    assert ours == theirs
    rows = tshark_fields(path, ["pop.response.indicator"], extra=("-Y", "pop.response.indicator"))
    statuses = sorted(s for (ss,) in rows for s in ss.split(",") if s)
    ours_st = sorted(r["status"] for r in mine if r["status"])
    if "pop3-unknown-commands" in path.name:
        # the server sends three lines that are neither +OK nor -ERR: anomalies for us
        assert len([r for r in recs if r.get("name") == "pop3-bad-status-line"]) == 3
    assert ours_st == statuses
    if path.name.startswith("OISF+suricata-verify__tests_pop3_input"):
        tops = [r for r in mine if r["command"] == "TOP"]
        assert len(tops) == 49 and all(r["lines"] is not None for r in tops)
