"""dissect.columns.filearray: a FileArray reads and writes as an ``array`` of its type,
whether in memory, in a file mapping, or thrown back to memory when no file can be used;
a mapping made before a fork is the parent's alone afterwards; and whole runs with every
array (and every key table) in a file mapping give exactly what runs in memory give:
one pass in memory and streamed, split runs with forked workers, the corpus."""

from __future__ import annotations

import json
import os
import pickle
import sys
from array import array
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import PCAPS, Collect, corpus_files  # noqa: E402

import dissect.columns.filearray as fa  # noqa: E402
from dissect import parallel  # noqa: E402
from dissect.analysis import tcp as tcpmod  # noqa: E402
from dissect.columns.compact import KeyTable  # noqa: E402
from dissect.engine import Engine, finish_stream  # noqa: E402

RANGES = {"b": (-128, 127), "B": (0, 255), "H": (0, 65535), "i": (-2**31, 2**31 - 1),
          "I": (0, 2**32 - 1), "q": (-2**63, 2**63 - 1), "Q": (0, 2**64 - 1)}


@pytest.fixture
def mapped(monkeypatch):
    """Every FileArray and key table goes to a file mapping at once."""
    monkeypatch.setattr(fa, "SPILL_BYTES", 0)


def _ops(tc):
    lo, hi = RANGES.get(tc, (None, None))
    value = st.floats(allow_nan=False) if tc == "d" else st.integers(lo, hi)
    return st.lists(st.one_of(
        st.tuples(st.just("append"), value),
        st.tuples(st.just("set"), st.integers(-40, 40), value),
        st.tuples(st.just("zero"), st.integers(0, 60)),
        st.tuples(st.just("extend"), st.lists(value, max_size=20))), max_size=120)


@pytest.mark.parametrize("spill", [0, 16, 64, 1 << 20])
@pytest.mark.parametrize("tc", ["b", "B", "H", "i", "I", "q", "Q", "d"])
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # set once, same value
@given(data=st.data())
def test_a_file_array_acts_as_an_array(monkeypatch, tc, spill, data):
    monkeypatch.setattr(fa, "SPILL_BYTES", spill)
    ref, got = array(tc), fa.FileArray(tc)
    for op in data.draw(_ops(tc)):
        if op[0] == "append":
            ref.append(op[1])
            got.append(op[1])
        elif op[0] == "extend":
            ref.extend(op[1])
            got.extend(op[1])
        elif op[0] == "zero":
            if op[1] > len(ref):
                ref.frombytes(bytes((op[1] - len(ref)) * ref.itemsize))
            got.resize_zero(op[1])
        else:
            i, v = op[1], op[2]
            if -len(ref) <= i < len(ref):
                ref[i] = v
                got[i] = v
            else:
                with pytest.raises(IndexError):
                    got[i] = v
                with pytest.raises(IndexError):
                    got[i]
        assert len(got) == len(ref)
    assert got.tolist() == ref.tolist()
    assert list(got) == ref.tolist()
    assert [got[i] for i in range(-len(ref), len(ref))] == \
        [ref[i] for i in range(-len(ref), len(ref))]
    assert got[2:9:3].tolist() == ref[2:9:3].tolist()
    assert got.tobytes() == ref.tobytes()
    assert got.to_array() == ref
    back = pickle.loads(pickle.dumps(got))
    assert back.tolist() == ref.tolist() and back.typecode == tc
    if spill == 0 and len(ref):
        assert got.mapped     # (when a file can be made: /tmp is writable in the tests)


@pytest.mark.parametrize("tc,bad", [("H", 70000), ("B", -1), ("q", 2**63), ("I", 2**32),
                                    ("q", "x"), ("q", None), ("d", "x")])
def test_a_file_array_refuses_what_an_array_refuses(mapped, tc, bad):
    ref, got = array(tc, [0] * 4), fa.FileArray(tc, [0] * 4)
    assert got.mapped
    with pytest.raises(Exception) as e_ref:
        ref.append(bad)
    with pytest.raises(type(e_ref.value)):
        got.append(bad)
    with pytest.raises(type(e_ref.value)):
        got[1] = bad
    assert got.tolist() == [0] * 4


def test_large_arrays_move_to_a_file_and_small_ones_stay():
    small = fa.FileArray("q", range(100))
    assert not small.mapped
    big = fa.FileArray("q")
    for i in range(fa.SPILL_BYTES // 8 + 10):
        big.append(i * 3)
    assert big.mapped and big[-1] == (fa.SPILL_BYTES // 8 + 9) * 3
    # the values are in the file, not in the process's heap
    assert big._a is None and big._mm is not None
    big.close()
    assert len(big) == 0 and not big.mapped


def test_no_file_means_memory_and_the_same_values(mapped, monkeypatch):
    def no_file(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(fa.tempfile, "mkstemp", no_file)
    a = fa.FileArray("q")
    for i in range(5000):
        a.append(i)
    assert not a.mapped and a.tolist() == list(range(5000))
    assert type(fa.zeros(4096)) is array
    t = KeyTable()
    for k in range(3000):
        t[k << 70 | k] = (k, k)
    assert t._map is None and all(t.get(k << 70 | k) == (k, k) for k in range(3000))


def test_a_file_that_cannot_grow_goes_back_to_memory(mapped, monkeypatch):
    a = fa.FileArray("q")
    for i in range(10):
        a.append(i)
    assert a.mapped
    monkeypatch.setattr(fa, "_grow", lambda mm, fd, n: None)
    monkeypatch.setattr(fa, "_map", lambda n: None)     # (no new file either)
    for i in range(10, 3000):
        a.append(i)
    assert not a.mapped and a.tolist() == list(range(3000))


def test_zeros_is_a_mapping_when_large():
    z = fa.zeros(fa.SPILL_BYTES // 8 + 1)
    assert type(z) is fa.Zeros and len(z.view) == fa.SPILL_BYTES // 8 + 1
    assert not any(z.view)
    z.close()
    assert type(fa.zeros(16)) is array


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_after_a_fork_each_process_writes_its_own_mapping(mapped):
    a = fa.FileArray("q", range(100))
    t = KeyTable()
    for k in range(200):
        t[k] = (k, 0)
    assert a.mapped and t._map is not None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:    # the child writes over everything, then says what it reads
        try:
            for i in range(100):
                a[i] = -i
            a.append(7)
            for k in range(200):
                t[k] = (k + 1, 1)
            ok = a.tolist() == [-i for i in range(100)] + [7] and \
                all(t.get(k) == (k + 1, 1) for k in range(200))
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(r)
    assert a.tolist() == list(range(100))
    assert all(t.get(k) == (k, 0) for k in range(200))
    a.append(5)     # the parent's mapping is still its own to write
    assert a[-1] == 5


# --------------------------------------------------------------------------- whole runs

def _engine(path, stream: bool):
    return _outcome(Engine(str(path), stream=stream).run())


def _split(path):
    return _outcome(parallel.run(str(path), jobs=2, stream=True))


def _outcome(res):
    if res.streamed:
        got = finish_stream(res, [Collect()])[0]
        conns, records = got.conns, got.records
    else:
        conns, records = list(res.connections), list(res.records)
    return (json.dumps(conns, default=str), json.dumps(records, default=str),
            json.dumps(res.summary.to_record(), default=str, sort_keys=True),
            repr(list(res.syns)), repr(list(res.retrans)), str(res.error))


def _asleep(monkeypatch):
    # connections sleep as soon as they are over: the dormant key table, the slots and
    # the layers above's one byte a connection are all used
    monkeypatch.setattr(tcpmod, "DORMANT_AFTER_S", 0.0)
    monkeypatch.setattr(tcpmod, "DORMANT_SWEEP_EVERY", 1)


@pytest.mark.parametrize("path", sorted(PCAPS.glob("*.pcap")), ids=lambda p: p.name)
def test_lab_runs_are_the_same_with_every_array_in_a_file(path, monkeypatch):
    ref = [_engine(path, False), _engine(path, True), _split(path)]
    monkeypatch.setattr(fa, "SPILL_BYTES", 0)
    _asleep(monkeypatch)
    got = [_engine(path, False), _engine(path, True), _split(path)]
    for what, r, g in zip(("in memory", "streamed", "split in two"), ref, got):
        assert g == r, f"{path.name}: {what}"
    assert ref[1] == ref[2]


def test_corpus_runs_are_the_same_with_every_array_in_a_file(monkeypatch):
    files = [p for p in corpus_files() if p.exists()]
    if not files:
        pytest.skip("corpus not found")
    ref = {p: _engine(p, True) for p in files}
    monkeypatch.setattr(fa, "SPILL_BYTES", 0)
    _asleep(monkeypatch)
    for p in files:
        assert _engine(p, True) == ref[p], p.name
