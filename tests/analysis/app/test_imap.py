"""IMAP parser: tags, completions, untagged counts, literals, AUTHENTICATE, STARTTLS."""

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

from dissect.analysis.app import imap
from dissect.analysis.app.base import CLIENT, SERVER
from tests.conftest import corpus_params, needs_tshark, tshark_fields

BODY = b"Subject: hi\r\n\r\n)\r\na1 OK not a completion\r\n"   # CRLFs inside a literal
SCRIPT = [
    (SERVER, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n", 1, 1.0),
    (CLIENT, b"a1 LOGIN {5}\r\n", 2, 1.1),
    (SERVER, b"+ go on\r\n", 3, 1.2),
    (CLIENT, b"alice secret\r\n", 4, 1.3),
    (SERVER, b"a1 OK LOGIN completed\r\n", 5, 1.4),
    (CLIENT, b"a2 SELECT INBOX\r\n", 6, 1.5),
    (SERVER, b"* 3 EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen)\r\na2 OK [READ-WRITE] done\r\n", 7, 1.6),
    (CLIENT, b"a3 UID FETCH 1 (BODY[])\r\na4 NOOP\r\n", 8, 1.7),
    (SERVER, b"* 1 FETCH (UID 1 BODY[] {%d}\r\n" % len(BODY) + BODY + b")\r\n", 9, 1.8),
    (SERVER, b"a3 OK FETCH done\r\na4 NO nope\r\n", 10, 1.9),
    (CLIENT, b"a5 AUTHENTICATE PLAIN\r\n", 11, 2.0),
    (SERVER, b"+ \r\n", 12, 2.1),
    (CLIENT, b"AGFsaWNlAHNlY3JldA==\r\n", 13, 2.2),
    (SERVER, b"a5 OK authenticated\r\n", 14, 2.3),
    (CLIENT, b"a6 IDLE\r\n", 15, 2.4),
    (SERVER, b"+ idling\r\n* 4 EXISTS\r\n", 16, 2.5),
    (CLIENT, b"DONE\r\n", 17, 2.6),
    (SERVER, b"a6 OK IDLE terminated\r\n", 18, 2.7),
    (CLIENT, b"a7 STARTTLS\r\n", 19, 2.8),
    (SERVER, b"a7 OK begin TLS\r\n", 20, 2.9),
    (CLIENT, b"\x16\x03\x01\x00\x10", 21, 3.0),
]


def _records(script=SCRIPT, cuts=None):
    return run_script(imap.ImapParser(conn=4), script, cuts)


def test_tagged_commands_completions_untagged_and_literals():
    recs = _records()
    cmds = [r for r in recs if r["type"] == "imap"]
    assert [(r["tag"], r["command"], r["status"], r["untagged"]) for r in cmds] == [
        ("a1", "LOGIN", "OK", 0), ("a2", "SELECT", "OK", 3), ("a3", "UID FETCH", "OK", 1),
        ("a4", "NOOP", "NO", 0), ("a5", "AUTHENTICATE", "OK", 0), ("a6", "IDLE", "OK", 1),
        ("a7", "STARTTLS", "OK", 0)]
    by = {r["tag"]: r for r in cmds}
    assert by["a1"]["literal_bytes"] == 5 and by["a1"]["arg"] == "{5} secret"
    assert by["a3"]["literal_bytes"] == len(BODY)
    assert by["a5"]["auth_data"] == ["AGFsaWNlAHNlY3JldA=="]
    assert by["a7"]["tls"] is True
    assert by["a2"]["response_time_s"] == pytest.approx(0.1)
    session = recs[-1]
    assert session["type"] == "imap-session" and session["greeting"].startswith("OK [CAPAB")
    assert session["tls"] is True
    assert not [r for r in recs if r["type"] == "anomaly"]


@settings(max_examples=60, deadline=None)
@given(cut_strategy(SCRIPT))
def test_records_do_not_depend_on_segmentation(cuts):
    assert _records(cuts=list(cuts)) == _records()


def test_literal_limit_and_bad_lines_are_anomalies():
    script = [(SERVER, b"* OK hi\r\n", 1, 0.0),
              (CLIENT, b"a1 APPEND box {99999999999}\r\na2 NOOP\r\n", 2, 0.1),
              (SERVER, b"what is this\r\na1 BAD too big\r\na2 OK\r\n", 3, 0.2)]
    recs = _records(script)
    assert [r["name"] for r in recs if r["type"] == "anomaly"] == [
        "imap-literal-too-large", "imap-bad-response-line"]
    assert [(r["tag"], r["status"]) for r in recs if r["type"] == "imap"] == [
        ("a1", "BAD"), ("a2", "OK")]


def test_random_bytes_never_raise():
    rng = random.Random(11)
    for _ in range(200):
        p = imap.ImapParser(conn=1)
        for i in range(6):
            chunk = rng.choice([rng.randbytes(rng.randint(0, 200)), b"a1 LOGIN {3}\r\n",
                                b"* 1 FETCH {10}\r\n", b"a1 OK\r\n", b"+ \r\n",
                                b"b AUTHENTICATE X\r\n"])
            p.feed(rng.choice((CLIENT, SERVER)), chunk, i, float(i))
        p.gap(rng.choice((CLIENT, SERVER)), 5, 7, 7.0)
        p.close()


def test_dissect_payload():
    (layer,) = imap.dissect_payload(b"a1 SELECT INBOX\r\n", 20)
    assert layer.protocol == "imap" and int(layer.osi) == 7
    f = {x.name: x for x in layer.fields}
    assert (f["imap.tag"].value, f["imap.tag"].offset) == ("a1", 20)
    assert (f["imap.request.command"].value, f["imap.request.command"].offset) == ("SELECT", 23)
    assert imap.dissect_payload(b"USER bob\r\n", 0) == []


@needs_tshark
@pytest.mark.parametrize("path", corpus_params("imap"))
def test_corpus_completions_match_tshark(path):
    cap = read_capture(path)
    recs = []
    for t in cap.tcp:
        if imap.ImapParser.probe(t.head(0), t.head(1), t.client[1], t.server[1]) >= 0.5:
            recs += feed_stream(imap.ImapParser(t.id, stream_meta(t)), t)
    ours = sorted((r["reply_frame"], r["tag"], r["status"]) for r in recs
                  if r["type"] == "imap" and r["status"])
    rows = tshark_fields(path, ["frame.number", "imap.response_tag", "imap.response.status"],
                         extra=("-Y", "imap.response.status"))
    # tshark reads the ")" that closes a FETCH literal as a line tagged ")": not a completion
    theirs = sorted((int(f), [t for t in tag.split(",") if t != ")"][0], st)
                    for f, tag, st in rows)
    assert ours == theirs
    reqs = tshark_fields(path, ["imap.request"], extra=("-Y", "imap.request"))
    assert len([r for r in recs if r["type"] == "imap" and r["command"]]) == len(reqs)
    if "tcp-async" in path.name:
        # server-to-client only: every completion names a tag we never saw sent
        assert len(ours) == 9
        assert all(r["command"] is None for r in recs if r["type"] == "imap")


def test_outstanding_tag_limit_is_named_and_enforced():
    p = imap.ImapParser(conn=1)
    out = p.feed(CLIENT, b"".join(b"t%d NOOP\r\n" % i for i in range(imap.MAX_PENDING + 3)), 1, 0.0)
    assert [r["name"] for r in out if r["type"] == "anomaly"] == ["imap-too-many-outstanding"] * 3
    assert len(p.pending) == imap.MAX_PENDING
