"""Split runs (dissect.parallel) against the one-pass reference path, frame by frame: JSONL
packet lines, connection records, application records, summary, SYN and retransmission
lists, capture errors - on every corpus capture, with 2 and 3 shards."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import CORPUS, PCAPS, corpus_files, run_dissect  # noqa: E402

from dissect import parallel  # noqa: E402
from dissect.engine import Engine  # noqa: E402
from dissect.report import jsonl  # noqa: E402


def _reference(path):
    lines: list = []
    res = Engine(str(path), on_frame=lambda fr, d, v: lines.append(
        jsonl.packet_line(fr, d, v.flags, v.conn, v.values))).run()
    return res, lines


def _same(a, b, la, lb):
    assert la == lb
    assert a.connections == b.connections
    assert a.records == b.records
    assert a.summary.to_record() == b.summary.to_record()
    assert a.syns == b.syns
    assert a.retrans == b.retrans
    assert str(a.error) == str(b.error)
    assert type(a.error) is type(b.error)


def _corpus():
    files = [p for p in corpus_files() if p.exists()]
    if not files:
        pytest.skip(f"corpus not found at {CORPUS}")
    return files


def test_split_equals_one_pass_on_whole_corpus():
    """In-process shards (no fork): every shard count gives the reference results."""
    for path in _corpus():
        a, la = _reference(path)
        for n in (2, 3):
            parts = []
            lines_by_shard = []
            for i in range(n):
                got: list = []
                parts.append(parallel.analyse_shard(
                    [str(path)], i, n, lines=lambda f, c, p, s, _g=got, _i=i:
                    _g.append((f, _i, c, p, s))))
                lines_by_shard.append(got)
            if parallel._needs_one_pass(parts):
                parts = [parallel.analyse_shard([str(path)], 0, 1)]
            b = parallel.merge([str(path)], parts)
            lb: list = []
            parallel.emit_lines((iter(x) for x in lines_by_shard), n, lb.append)
            _same(a, b, la, lb)


def test_split_processes_big_capture():
    """Real worker processes on the largest committed captures."""
    caps = sorted(PCAPS.glob("*.pcap"), key=lambda p: -p.stat().st_size)[:3]
    if not caps:
        pytest.skip("no committed captures")
    for path in caps:
        a, la = _reference(path)
        lb: list = []
        b = parallel.run([str(path)], jobs=2, on_line=lb.append)
        _same(a, b, la, lb)


def test_shards_really_split_connections():
    path = PCAPS / "http-keepalive-loss.pcap"
    if not path.exists():
        pytest.skip("capture missing")
    parts = [parallel.analyse_shard([str(path)], i, 2) for i in range(2)]
    frames = [p.result.summary.frames for p in parts]
    whole = Engine(str(path)).run().summary.frames
    assert sum(frames) == whole
    # every connection is whole in exactly one shard
    ids = [(c["first_frame"], c["last_frame"]) for p in parts for c in p.result.connections]
    assert len(ids) == len(set(ids))


def test_ftp_control_and_data_stay_together():
    """FTP data connections are tied to the control connection: the split run notices and
    gives the one-pass result."""
    for name in ("ftp-passive.pcap", "ftp-active.pcap"):
        path = PCAPS / name
        if not path.exists():
            pytest.skip("capture missing")
        a, la = _reference(path)
        lb: list = []
        b = parallel.run([str(path)], jobs=2, on_line=lb.append)
        _same(a, b, la, lb)
        assert any(r.get("type") == "ftp-data" for r in b.records)


def _split_pcap(src: Path, dst_dir: Path, parts: int) -> list[Path]:
    data = src.read_bytes()
    hdr, off, recs = data[:24], 24, []
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    while off + 16 <= len(data):
        caplen = struct.unpack_from(order + "I", data, off + 8)[0]
        recs.append(data[off:off + 16 + caplen])
        off += 16 + caplen
    k = (len(recs) + parts - 1) // parts
    out = []
    for i in range(parts):
        p = dst_dir / f"part{i}.pcap"
        p.write_bytes(hdr + b"".join(recs[i * k:(i + 1) * k]))
        out.append(p)
    return out


def test_rotated_files_are_one_capture(tmp_path):
    """A capture cut into three files gives the results of the whole file: connections that
    span files are merged."""
    path = PCAPS / "http-keepalive-loss.pcap"
    if not path.exists():
        pytest.skip("capture missing")
    a, la = _reference(path)
    files = [str(p) for p in _split_pcap(path, tmp_path, 3)]
    for jobs in (1, 2):
        lb: list = []
        b = parallel.run(files, jobs=jobs, on_line=lb.append)
        assert la == lb
        assert a.connections == b.connections
        assert a.records == b.records
        assert a.syns == b.syns and a.retrans == b.retrans
        sa, sb = a.summary.to_record(), b.summary.to_record()
        assert sa == sb


def test_damaged_capture_same_error_and_frames(tmp_path):
    path = PCAPS / "http-keepalive-loss.pcap"
    if not path.exists():
        pytest.skip("capture missing")
    bad = tmp_path / "cut.pcap"
    data = path.read_bytes()
    bad.write_bytes(data[:len(data) * 2 // 3])
    a, la = _reference(bad)
    assert a.error is not None
    lb: list = []
    b = parallel.run([str(bad)], jobs=2, on_line=lb.append)
    _same(a, b, la, lb)


def test_cli_jobs_same_output(tmp_path):
    path = PCAPS / "http-keepalive-loss.pcap"
    if not path.exists():
        pytest.skip("capture missing")
    # (below SPLIT_MIN_BYTES the CLI itself stays in one process; the split is tested above)
    rc1, out1, err1 = run_dissect("analyze", path, "--format", "jsonl", "-j", "1")
    rc2, out2, err2 = run_dissect("analyze", path, "--format", "jsonl", "-j", "2", "--quiet")
    assert rc1 == rc2 == 0, err1 + err2
    assert out1 == out2
    assert err2 == ""          # no progress bar when stderr is not a terminal


def test_workers_find_the_same_slowest_transactions():
    """The report's slowest-transactions table from the workers' candidates equals the one
    timed in one pass, with global connection ids, including ties."""
    from dissect.analysis.findings.timing import slowest, timing_records
    caps = [p for p in sorted(PCAPS.glob("*.pcap")) if "ftp" not in p.name]
    checked = 0
    for path in caps:
        ref = Engine(str(path)).run()
        want = sorted(timing_records(ref), key=lambda r: -(r.get("total_s") or 0))
        for jobs in (2, 3):
            for n in (1, 5):
                got = parallel.run([str(path)], jobs=jobs, slowest=n)
                assert got.slowest_timings is not None, path
                assert slowest(got, n) == want[:n], (path, jobs, n)
        checked += bool(want)
    assert checked >= 5
    # a split run that was not asked times everything again, with the same answer
    got = parallel.run([str(caps[0])], jobs=2)
    assert got.slowest_timings is None


def test_ftp_runs_do_not_use_worker_timings():
    """FTP data linking changes connections after the merge: the table is timed then."""
    path = PCAPS / "ftp-passive.pcap"
    if not path.exists():
        pytest.skip("pcaps/ftp-passive.pcap not committed")
    from dissect.analysis.findings.timing import slowest, timing_records
    got = parallel.run([str(path)], jobs=2, slowest=5)
    assert got.slowest_timings is None
    ref = Engine(str(path)).run()
    assert slowest(got, 5) == sorted(timing_records(ref),
                                     key=lambda r: -(r.get("total_s") or 0))[:5]


def test_slowest_merge_breaks_ties_as_one_pass():
    """Connections cloned with the same durations, later clones starting earlier (equal
    totals, start order against connection order): the merged candidates of any split of
    them are the one-pass table, ties in the same order."""
    import copy

    from dissect.analysis.findings.timing import slowest, slowest_candidates
    from dissect.engine import Result
    path = PCAPS / "http-keepalive-loss.pcap"
    if not path.exists():
        pytest.skip("pcaps/http-keepalive-loss.pcap not committed")
    base = Engine(str(path)).run()
    tcp = [c for c in base.connections if c.get("proto") == "tcp"]
    conns, records = [], []
    def moved(d, dt):
        return {k: (v + dt if k.endswith("_ts") and isinstance(v, float) else v)
                for k, v in d.items()}
    for k in range(6):
        shift = {}
        dt = (5 - k) * 0.5
        for c in tcp:
            c2 = moved(copy.deepcopy(c), dt)
            c2["id"] = shift[c["id"]] = len(conns)
            conns.append(c2)
        for r in base.records:
            if r.get("conn") in shift:
                r2 = moved(copy.deepcopy(r), dt)
                r2["conn"] = shift[r["conn"]]
                records.append(r2)
    one = Result("x", connections=conns, records=records)
    for n in (1, 3, 5, 40):
        want = slowest(one, n)
        assert len(want) == min(n, len(slowest(one, 10**6)))
        for nshards in (2, 3):
            parts, maps = [], []
            for sh in range(nshards):
                mine = [c for c in conns if c["id"] % nshards == sh]
                ids = {c["id"] for c in mine}
                local = {c["id"]: i for i, c in enumerate(mine)}
                part = Result("x", connections=[dict(c, id=local[c["id"]]) for c in mine],
                              records=[dict(r, conn=local[r["conn"]]) for r in records
                                       if r.get("conn") in ids])
                sr = parallel.ShardResult(sh, part)
                sr.slowest = (n, slowest_candidates(part, n))
                parts.append(sr)
                maps.append({v: k for k, v in local.items()})
            _n, got = parallel._merge_slowest(parts, maps, conns)
            assert [(r["conn"], r["total_s"], r["stages"]) for r in got] == \
                [(r["conn"], r["total_s"], r["stages"]) for r in want], (n, nshards)


def test_parent_takes_a_shard_and_results_come_through_files(tmp_path, monkeypatch):
    """Without packet lines the parent analyses shard 0 itself and forks the rest; each
    worker hands its result over in a file that is gone afterwards. The results are those
    of one pass (with and without packet lines, which keep every shard in a worker)."""
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for path in sorted(PCAPS.glob("*.pcap")):
        a, la = _reference(path)
        for jobs in (2, 3):
            b = parallel.run([str(path)], jobs=jobs)
            _same(a, b, la, la)
            lb: list = []
            c = parallel.run([str(path)], jobs=jobs, on_line=lb.append)
            _same(a, c, la, lb)
    assert list(tmp_path.iterdir()) == []


def test_shard_result_file_round_trip(tmp_path, monkeypatch):
    """dump_result / load_result: chunked lists come back whole and in order, the file is
    removed, and an emptied list is left behind in the dumped result."""
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(parallel, "DUMP_CHUNK", 3)
    r = parallel.analyse_shard([str(PCAPS / "http-keepalive-loss.pcap")], 0, 1)
    conns, recs, keys = (list(r.result.connections), list(r.result.records),
                         list(r.record_keys))
    assert len(recs) > 3
    path = parallel.dump_result(r)
    assert r.result.records == [] and Path(path).exists()
    back = parallel.load_result(path)
    assert not Path(path).exists()
    assert (back.result.connections, back.result.records, back.record_keys) == (
        conns, recs, keys)


def test_connection_records_cross_the_worker_hand_over_unchanged_and_as_small():
    """wrap_records/unwrap_records (what a worker's result file holds): the records come
    back equal, in their key order, and as small (key-sharing dicts) as record() made them;
    records of another shape pass as they are."""
    import pickle

    from dissect.analysis.tcp import CONN_KEYS, unwrap_records, wrap_records
    wrapped_any = False
    for path in sorted(PCAPS.glob("*.pcap")):
        conns = Engine(str(path)).run().connections
        wrapped = wrap_records(conns)
        wrapped_any = wrapped_any or any(type(x) is tuple for x in wrapped)
        back = unwrap_records(pickle.loads(pickle.dumps(wrapped, pickle.HIGHEST_PROTOCOL)))
        assert back == conns, path.name
        for a, b in zip(conns, back):
            assert list(a) == list(b)
            if a.get("proto") == "tcp":
                assert tuple(a) == CONN_KEYS
                assert sys.getsizeof(b) <= sys.getsizeof(a)
                for k in ("client", "packets", "bytes", "fin", "handshake"):
                    if a[k] is not None:
                        assert list(a[k]) == list(b[k])
                        assert sys.getsizeof(b[k]) <= sys.getsizeof(a[k]), k
    assert wrapped_any
    # past the first few (CPython sizes the first ones for every key the class may get),
    # key-sharing sub-records are about half a dict display of the same items
    from dissect.analysis.tcp import _endpoint, _sides
    made = [(_endpoint("127.0.0.1", 40000 + i), _sides(i, 2 * i)) for i in range(64)]
    assert sys.getsizeof(made[-1][0]) < sys.getsizeof({"ip": "127.0.0.1", "port": 1}) * 0.6
    assert sys.getsizeof(made[-1][1]) < sys.getsizeof({"client": 1, "server": 2}) * 0.6
    odd = [{"type": "connection", "proto": "udp", "id": "udp/0"}, {"proto": "tcp", "x": 1}]
    assert wrap_records(odd) == odd and unwrap_records(odd) == odd


@pytest.mark.parametrize("name", ["ftp-passive.pcap", "ftp-active.pcap"])
def test_ftp_cut_into_files_is_linked_with_one_job_and_streamed(tmp_path, name):
    """An FTP capture cut into files, run with one job and the records in stores (what
    `dissect analyze` does with small files): the data connections are still linked to
    their control connection, as in one pass over the whole file."""
    from dissect.engine import finish_stream
    from dissect.analysis.observe import Observer

    class _Records(Observer):
        def start(self, res):
            self.out = []

        def record(self, r):
            self.out.append(r)

        def finish(self, res):
            return self.out
    path = PCAPS / name
    if not path.exists():
        pytest.skip("capture missing")
    a, _ = _reference(path)
    files = [str(p) for p in _split_pcap(path, tmp_path, 2)]
    for jobs in (1, 2):
        b = parallel.run(files, jobs=jobs, stream=True)
        recs = finish_stream(b, [_Records()])[0] if b.streamed else b.records
        assert recs == a.records, jobs
        assert any(r.get("type") == "ftp-data" for r in recs)


def test_merged_rows_are_sorted_rows_whatever_the_parts_order():
    """The merge's SYN and retransmission rows: parts in frame order are merged as they
    are read, others sorted; either way, what sorting every row (ties in part order)
    gives, connection ids mapped."""
    import random
    rnd = random.Random(7)
    for _ in range(200):
        parts = []
        for _p in range(rnd.randint(1, 4)):
            frames = [rnd.randint(1, 30) for _ in range(rnd.randint(0, 8))]
            if rnd.random() < 0.7:
                frames.sort()
            parts.append([(rnd.randint(0, 5), 0, 0, f, float(f), None, None) for f in frames])
        maps = [{c: 100 * i + c for c in range(0, 6, 2)} for i in range(len(parts))]
        want = sorted(((maps[i].get(r[0], r[0]),) + r[1:] for i, p in enumerate(parts)
                       for r in p), key=lambda r: r[3])
        assert list(parallel._merged(parts, 3, maps)) == want
        assert list(parallel._merged(parts, 3)) == sorted((r for p in parts for r in p),
                                                           key=lambda r: r[3])
