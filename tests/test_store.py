"""dissect.store: records on disk, read back in order, by position, and from a file another
process wrote; and the streamed runs built on it give what the in-memory runs give."""

import glob
import json
import os
import pickle
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import Collect  # noqa: E402

import dissect.store as store_mod
from dissect.analysis.tcp import unwrap_records, wrap_records
from dissect.store import FileBlobs, RecordKeys, RecordStore

PCAPS = sorted(glob.glob(str(Path(__file__).resolve().parent.parent / "pcaps" / "*.pcap*")))


def _recs(n):
    return [{"type": "t%d" % (i % 3), "i": i, "xs": [i, i + 1]} for i in range(n)]


def test_append_iterate_get_in_order():
    st = RecordStore(batch=4)
    recs = _recs(23)
    st.extend(recs)
    assert len(st) == 23 and bool(st)
    assert list(st) == recs
    assert list(st) == recs                     # iterable again
    assert [st.get(i) for i in (22, 0, 5, 4, 3, 19)] == [recs[i] for i in (22, 0, 5, 4, 3, 19)]
    assert list(st.iter_from(0)) == recs
    assert list(st.iter_from(6)) == recs[6:]
    assert list(st.iter_from(21)) == recs[21:]
    assert list(st.iter_from(23)) == []
    assert st.types == {"t0", "t1", "t2"}
    assert st.counts() == [4] * 5


def test_batches_read_back_are_kept_least_recent_first_out(monkeypatch):
    """get() keeps ``cached`` batches unpickled and drops the least recently read one:
    a store read nearly in order with a jump away and back reloads nothing."""
    st = RecordStore(batch=3)
    for r in _recs(30):
        st.append(r)
    st.cached = 2
    loads = []
    real = store_mod.pickle.loads
    monkeypatch.setattr(store_mod.pickle, "loads", lambda b: loads.append(1) or real(b))
    got = [st.get(p)["i"] for p in (0, 20, 1, 10, 2)]
    assert got == [0, 20, 1, 10, 2]
    # batches 0, 6, (0 again), 3 - which drops 6, not 0 - and 0 again: three loads
    assert len(loads) == 3


def test_full_batches_leave_memory():
    """Only the batch being filled is kept as objects: a stored record is not alive."""
    st = RecordStore(batch=8)
    recs = _recs(17)
    before = [sys.getrefcount(r) for r in recs]
    st.extend(recs)
    after = [sys.getrefcount(r) for r in recs]
    assert after[:16] == before[:16]            # pickled and let go
    assert after[16] == before[16] + 1          # the one in the batch being filled
    assert st._src is not None and st._src.size > 0


def test_wrapped_connection_records_round_trip():
    from dissect.engine import Engine
    res = Engine(PCAPS[0]).run()
    st = RecordStore(wrap_records, unwrap_records, batch=2)
    st.extend(res.connections)
    back = list(st)
    assert back == res.connections
    assert [list(c) for c in back] == [list(c) for c in res.connections]   # key order


def _shape(x):
    """A record with every dict as (keys in order, values): equal only with the same order."""
    if isinstance(x, dict):
        return [(k, _shape(v)) for k, v in x.items()]
    if isinstance(x, (list, tuple)):
        return [_shape(v) for v in x]
    return x


@pytest.mark.parametrize("path", PCAPS)
def test_plain_unwrap_equals_the_kept_records(path):
    # the records a streamed pass reads (plain dicts) are the records a run keeps
    from dissect.analysis.tcp import unwrap_plain
    from dissect.engine import Engine
    conns = Engine(path).run().connections
    wrapped = wrap_records(conns)
    assert _shape(unwrap_plain(wrapped)) == _shape(unwrap_records(wrapped)) == _shape(conns)
    assert any(type(w) is tuple for w in wrapped) == any(c["proto"] == "tcp" for c in conns)


def test_hand_over_through_a_file(tmp_path):
    a = RecordStore(batch=5)
    b = RecordStore(wrap_records, unwrap_records, batch=3)
    ra, rb = _recs(12), _recs(7)
    a.extend(ra)
    b.extend(rb)
    path = tmp_path / "f"
    with open(path, "wb") as f:
        f.write(b"header")
        a.flush()
        b.flush()
        ca, cb = a.counts(), b.counts()
        assert a.write_to(f) == 12 and b.write_to(f) == 7
    fd = os.open(path, os.O_RDONLY)
    os.unlink(path)
    blobs = FileBlobs(fd)
    sa, off = RecordStore.from_file(blobs, 6, ca, a.types)
    sb, end = RecordStore.from_file(blobs, off, cb, b.types, wrap_records, unwrap_records)
    assert end == os.fstat(fd).st_size
    assert list(sa) == ra and list(sb) == rb and sa.get(11) == ra[11]
    sa.close()
    assert list(sb) == rb           # closing one store leaves the shared file open
    blobs.close()


def test_no_spill_file_keeps_records_in_memory(monkeypatch):
    """Where no file can be written the records stay in memory, with the same results."""
    import tempfile

    def fail(*a, **k):
        raise OSError("read-only")
    monkeypatch.setattr(tempfile, "mkstemp", fail)
    st = RecordStore(batch=2)
    recs = _recs(9)
    st.extend(recs)
    assert list(st) == recs and st.get(3) == recs[3]
    assert st._src.in_memory == 4


def test_pickling_a_store_gives_its_records():
    st = RecordStore(wrap_records, unwrap_records, batch=2)
    st.extend(_recs(5))
    back = pickle.loads(pickle.dumps(st))
    assert list(back) == _recs(5)


def test_record_keys_sort_like_the_tuples():
    keys = [(0, 5), (0, 7), (2, (0, 3)), (2, (1, 9)), (1, 4), (5, 2), (3, 1), (4, 0), (0, 6)]
    rk = RecordKeys()
    rk.extend(keys[:4])
    rk += keys[4:]
    assert len(rk) == len(keys)
    flat = [rk[i] for i in range(len(rk))]
    assert sorted(range(len(keys)), key=lambda i: keys[i]) == \
        sorted(range(len(keys)), key=lambda i: flat[i])


def _same_result(a, b) -> bool:
    """Whether ``b`` was streamed (FTP control traffic needs every record at once: then a
    run gives lists, as without streaming); either way, it equals ``a``."""
    from dissect.engine import finish_stream
    streamed = b.streamed
    got = finish_stream(b, [Collect()])[0]
    assert not b.streamed
    assert got.conns == list(a.connections)
    assert [list(c) for c in got.conns] == [list(c) for c in a.connections]
    assert got.records == list(a.records)
    assert json.dumps(b.summary.to_record(), default=str) == \
        json.dumps(a.summary.to_record(), default=str)
    assert (b.syns, b.retrans, b.slowest_timings, str(b.error)) == \
        (a.syns, a.retrans, a.slowest_timings, str(a.error))
    return streamed


@pytest.fixture
def tiny_batches(monkeypatch):
    """Batches of 3 records and connections dormant at once: every path of the stores
    (full batches, reads by position, dormant connections' records on disk) is taken on
    small captures."""
    import dissect.analysis.tcp as tcp
    monkeypatch.setattr(store_mod, "BATCH", 3)
    monkeypatch.setattr(tcp, "DORMANT_AFTER_S", 0.0)
    monkeypatch.setattr(tcp, "DORMANT_SWEEP_EVERY", 4)


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_streamed_runs_equal_in_memory_runs(tiny_batches, jobs):
    from dissect import parallel as par
    assert PCAPS
    streamed = []
    for p in PCAPS:
        a = par.run([p], jobs=jobs, slowest=5)
        b = par.run([p], jobs=jobs, slowest=5, stream=True)
        if _same_result(a, b):
            streamed.append(p)
    assert len(streamed) >= len(PCAPS) - 3, "only FTP captures go unstreamed"


def test_streamed_split_run_of_several_files(tiny_batches):
    from dissect import parallel as par
    paths = [p for p in PCAPS if "ftp" not in p][:4]
    assert _same_result(par.run(paths, jobs=2), par.run(paths, jobs=2, stream=True))


def test_a_merged_stream_is_read_once():
    from dissect import parallel as par
    from dissect.engine import finish_stream
    b = par.run([PCAPS[0]], jobs=2, stream=True)
    finish_stream(b, [])
    with pytest.raises(RuntimeError, match="once"):
        list(b.connections)
