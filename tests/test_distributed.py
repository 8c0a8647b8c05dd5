"""--engine dask on a LocalCluster: the same results as the local run, including
connections that span files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import PCAPS, run_dissect  # noqa: E402

pytest.importorskip("dask.distributed", reason="dask[distributed] not installed")

from dissect import distributed, parallel  # noqa: E402
from test_parallel import _split_pcap  # noqa: E402


def test_dask_equals_local_over_split_files(tmp_path):
    path = PCAPS / "http-keepalive-loss.pcap"
    if not path.exists():
        pytest.skip("capture missing")
    files = [str(p) for p in _split_pcap(path, tmp_path, 3)]
    la: list = []
    a = parallel.run(files, jobs=1, on_line=la.append)
    lb: list = []
    b = distributed.run(files, jobs=2, on_line=lb.append)
    assert la == lb
    assert a.connections == b.connections
    assert a.records == b.records
    assert a.summary.to_record() == b.summary.to_record()
    assert a.syns == b.syns and a.retrans == b.retrans
    # a connection that spans files is one connection
    bounds = []
    n = 0
    for f in files:
        n += sum(1 for _ in __import__("dissect.io.capture", fromlist=["x"]).read_frames(f))
        bounds.append(n)
    assert any(c["first_frame"] <= bounds[0] < c["last_frame"] for c in b.connections)


def test_cli_dask_pattern(tmp_path):
    path = PCAPS / "http-keepalive-loss.pcap"
    if not path.exists():
        pytest.skip("capture missing")
    _split_pcap(path, tmp_path, 2)
    pattern = str(tmp_path / "part*.pcap")
    rc1, out1, e1 = run_dissect("analyze", pattern, "--format", "jsonl", "-j", "1")
    rc2, out2, e2 = run_dissect("analyze", pattern, "--format", "jsonl", "--engine", "dask",
                                "-j", "2", "-q")
    assert rc1 == rc2 == 0, e1 + e2
    assert out1 == out2
