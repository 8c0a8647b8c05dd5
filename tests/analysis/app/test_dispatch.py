"""The dispatcher through the whole engine: protocol chosen by content, records with
connection ids, parser failures contained, agreement with tshark on real captures."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from conftest import PCAPS, corpus_files, needs_tshark, tshark_fields  # noqa: E402

from dissect.analysis.app import dispatch  # noqa: E402
from dissect.analysis.app.base import StreamParser  # noqa: E402
from dissect.engine import Engine  # noqa: E402


def _run(path):
    return Engine(str(path)).run()


def _cap(name):
    p = PCAPS / name
    if not p.exists():
        pytest.skip(f"{name} not committed")
    return p


def test_protocols_by_connection_on_lab_captures():
    res = _run(_cap("ftp-passive.pcap"))
    apps = {c["id"]: c["app"] for c in res.connections}
    assert apps[0] == "ftp"
    assert sorted(v for k, v in apps.items() if k != 0) == ["ftp-data"] * 3
    assert all(r.get("conn") is not None for r in res.records)
    res = _run(_cap("smtp-two-recipients.pcap"))
    assert [c["app"] for c in res.connections] == ["smtp"]
    res = _run(_cap("dns-resend.pcap"))
    assert {c["app"] for c in res.connections} == {"dns"}


@needs_tshark
@pytest.mark.parametrize("path", [pytest.param(p, id=p.name[:60]) for p in
                                  corpus_files("ftp", "smtp", "pop3", "dns")] or
                         [pytest.param(None, marks=pytest.mark.skip(reason="no corpus"))])
def test_command_counts_match_tshark_through_the_engine(path):
    res = _run(path)
    recs = res.records
    name = path.parent.name
    if name == "ftp":
        theirs = Counter(r[0].upper() for r in tshark_fields(path, ["ftp.request.command"]) if r[0])
        mine = Counter((r.get("command") or "").upper() for r in recs
                       if r["type"] == "ftp" and r.get("command"))
        # tshark keeps labelling TLS bytes as FTP after AUTH TLS: compare up to AUTH
        if "AUTH" in theirs:
            pytest.skip("FTP over TLS: tshark decodes the encrypted bytes as commands")
        assert mine == theirs
    elif name == "dns":
        rows = tshark_fields(path, ["frame.number", "dns.flags.response", "dns.qry.name",
                                    "frame.protocols"])
        # tshark also decodes DNS quoted inside ICMP errors; those are not transactions
        theirs = {int(r[0]) for r in rows if "0" in r[1].split(",") and r[2] and "icmp" not in r[3]}
        mine = {r["query_frame"] for r in recs if r["type"] == "dns" and r.get("query_frame")}
        assert mine == theirs
    elif name == "pop3":
        theirs = [r[0] for r in tshark_fields(path, ["pop.request.command"]) if r[0]]
        mine = [r.get("command") for r in recs if r["type"] == "pop3" and r.get("command")]
        assert len(mine) == len(theirs)
    elif name == "smtp":
        theirs = [r[0] for r in tshark_fields(path, ["smtp.req.command"]) if r[0]]
        mine = [r for r in recs if r["type"] == "smtp"]
        assert mine and len(theirs)


class _Exploding(StreamParser):
    name = "exploding"

    @classmethod
    def probe(cls, ch, sh, sport, dport):
        return 1.0 if ch.startswith(b"GET ") or ch.startswith(b"POST ") else 0.0

    def feed(self, direction, data, frame, ts):
        raise RuntimeError("boom")


def test_a_failing_parser_is_contained(monkeypatch):
    streams, grams = dispatch.registry()
    monkeypatch.setattr(dispatch, "_registry", ([_Exploding] + streams, grams))
    res = _run(_cap("http-keepalive.pcap"))
    an = [r for r in res.records if r["type"] == "anomaly"]
    assert an and an[0]["name"] == "parser-error" and "boom" in an[0]["detail"]
    assert res.error is None and res.summary.frames > 0


def test_content_decides_not_the_port():
    # SMTP on port 2525 (corpus), FTP found by its banner whatever the port
    files = [p for p in corpus_files("tcp_anomalies") if "mime-stream-depth" in p.name]
    if not files:
        pytest.skip("corpus file not present")
    res = _run(files[0])
    assert "smtp" in {c.get("app") for c in res.connections}


def _heads():
    """(client head, server head, client port, server port) of every TCP connection of the
    committed and corpus captures (read with dpkt, independently of dissect)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from corpus_flows import read_capture
    out = []
    for path in sorted(PCAPS.glob("*.pcap")) + [p for p in corpus_files() if p.exists()]:
        try:
            cap = read_capture(path)
        except Exception:   # damaged corpus files: their heads are not needed here
            continue
        for c in cap.tcp:
            out.append((c.head(0), c.head(1), c.client[1], c.server[1]))
    return out


def test_every_stream_probe_stays_within_its_declared_bound():
    import random
    streams, _grams = dispatch.registry()
    heads = _heads()
    assert len(heads) > 100
    rng = random.Random(5)
    special = sorted({p for cls in streams for p in cls.ports} | {0, 1, 1024, 65535})
    cases = []
    for ch, sh, cp, sp in heads:
        cases.append((ch, sh, cp, sp))
        cases.append((ch, b"", cp, sp))
        cases.append((b"", sh, cp, sp))
        for _ in range(3):
            a, b = bytearray(ch), bytearray(sh)
            for buf in (a, b):
                for _ in range(rng.randint(0, 4)):
                    if buf:
                        buf[rng.randrange(len(buf))] = rng.randrange(256)
            cases.append((bytes(a), bytes(b), rng.choice(special), rng.choice(special)))
    checked = 0
    for cls in streams:
        assert cls.probe_bound(1234, 80) < float("inf"), f"{cls.name} declares no bound"
        for ch, sh, cp, sp in cases:
            for sport, dport in ((cp, sp), (sp, cp)):
                try:
                    s = float(cls.probe(ch, sh, sport, dport))
                except Exception:   # the dispatcher scores a raising probe 0
                    continue
                assert s <= cls.probe_bound(sport, dport), (cls.name, ch[:40], sh[:40],
                                                            sport, dport, s)
                checked += 1
    assert checked > 10000


def test_skipping_bounded_probes_changes_no_decision(monkeypatch):
    files = sorted(PCAPS.glob("*.pcap")) + [p for p in corpus_files() if p.exists()][:80]
    for path in files:
        fast = _run(path)
        monkeypatch.setattr(dispatch.AppDispatcher, "skip_bounded", False)
        slow = _run(path)
        monkeypatch.setattr(dispatch.AppDispatcher, "skip_bounded", True)
        assert fast.connections == slow.connections, path
        assert fast.records == slow.records, path
