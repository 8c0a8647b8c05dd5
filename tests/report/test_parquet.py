"""--format parquet: four tables whose rows match the JSONL records."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import PCAPS, run_dissect  # noqa: E402

pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow not installed")

from dissect.report.parquet import schemas  # noqa: E402


def test_parquet_tables_match_jsonl(tmp_path):
    path = PCAPS / "http-retry-backoff.pcap"
    if not path.exists():
        pytest.skip("capture missing")
    rc, out, err = run_dissect("analyze", path, "--format", "jsonl")
    assert rc == 0, err
    recs = [json.loads(l) for l in out.splitlines()]
    packets = [r for r in recs if r["type"] == "packet"]
    conns = [r for r in recs if r["type"] == "connection"]
    apps = [r for r in recs if r["type"] not in ("packet", "connection", "summary")]
    rc, out, err = run_dissect("analyze", path, "--format", "parquet", "-o", tmp_path / "pq")
    assert rc == 0, err
    sch = schemas()
    tabs = {n: pq.read_table(tmp_path / "pq" / f"{n}.parquet") for n in sch}
    for n, t in tabs.items():
        assert t.schema.equals(sch[n]), n
    pk = tabs["packets"].to_pylist()
    assert len(pk) == len(packets)
    for row, r in zip(pk, packets):
        assert row["frame"] == r["frame"] and row["ts"] == r["ts"]
        assert row["flags"] == r["flags"]
        assert row["conn"] == (None if r["conn"] is None else str(r["conn"]))
        a = r.get("analysis") or {}
        assert row["ack_rtt"] == a.get("ack_rtt")
        assert row["bytes_in_flight"] == a.get("bytes_in_flight")
        assert row["protocols"] == "/".join(l["protocol"] for l in r["layers"][1:])
    cs = tabs["connections"].to_pylist()
    assert [json.loads(c["record"]) for c in cs] == conns
    assert [c["id"] for c in cs] == [str(c["id"]) for c in conns]
    tx = tabs["transactions"].to_pylist()
    assert [json.loads(t["record"]) for t in tx] == apps
    assert any(t["type"] == "http" for t in tx)
    ch = tabs["retry_chains"].to_pylist()
    assert ch and all(c["attempts"] >= 1 for c in ch)


def test_parquet_needs_output_dir():
    path = PCAPS / "http-retry-backoff.pcap"
    if not path.exists():
        pytest.skip("capture missing")
    rc, out, err = run_dissect("analyze", path, "--format", "parquet")
    assert rc != 0 and "-o" in err
