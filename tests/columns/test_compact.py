"""dissect/columns/compact.py: columns give back exactly what was appended, and sort
orders equal sorting the rows' tuples."""

from __future__ import annotations

import math
from array import array

from hypothesis import given
from hypothesis import strategies as st

import dissect.columns.filearray as fa
from dissect.columns.compact import Column, IdIndex, KeyTable, Sparse, is_sorted, order_by

_ODD = [None, "x", True, False, 2 ** 63, -(2 ** 63), 2 ** 63 - 1, -(2 ** 63) + 1, 1.5,
        float("nan"), float("inf"), -0.0, 0, 7, (1, 2)]


def _same(a, b) -> bool:
    """Equal and of the same type (NaN equal to NaN)."""
    if type(a) is not type(b):
        return False
    if type(a) is float and math.isnan(a):
        return math.isnan(b)
    return a == b


@given(st.lists(st.one_of(st.floats(allow_nan=True), st.integers(), st.none(),
                          st.sampled_from(_ODD))))
def test_columns_give_back_what_was_appended(values):
    spill = fa.SPILL_BYTES
    fa.SPILL_BYTES = 16     # a mapped column moves to its file after two values
    try:
        for code in ("d", "q"):
            for mapped in (False, True):
                c = Column(code, mapped)
                for v in values:
                    c.append(v)
                assert len(c) == len(values)
                assert all(_same(c[i], v) for i, v in enumerate(values)), code
                assert type(c.a) is (fa.FileArray if mapped else array)
    finally:
        fa.SPILL_BYTES = spill
    s = Sparse()
    for v in values:
        s.append(v)
    assert len(s) == len(values)
    assert all(_same(s[i], v) for i, v in enumerate(values))


_VALUE = st.one_of(st.floats(allow_nan=True), st.integers(), st.none(), st.sampled_from(_ODD))


@given(st.lists(_VALUE, min_size=1), st.lists(st.tuples(st.integers(0, 10 ** 6), _VALUE)))
def test_columns_set_as_lists_do(values, sets):
    """Overwriting a position (None over a value, a value over None or one kept aside, a
    negative index) reads back as a list would, and None is counted as it is held."""
    spill = fa.SPILL_BYTES
    fa.SPILL_BYTES = 16
    try:
        for code in ("d", "q"):
            for mapped in (False, True):
                c, ref = Column(code, mapped), list(values)
                for v in values:
                    c.append(v)
                for i, v in sets:
                    i = i % (2 * len(ref)) - len(ref)     # negative indexes too
                    c[i] = v
                    ref[i] = v
                assert all(_same(c[i], v) for i, v in enumerate(ref)), code
                assert c.nones == sum(1 for v in ref if v is None)
                if code == "d":
                    aside = [not (type(v) is float and v == v) for v in ref]
                else:
                    aside = [not (type(v) is int and -(2 ** 63) < v < 2 ** 63) for v in ref]
                assert c.irregular == any(aside)
                assert len(c.other) == sum(aside) - c.nones
    finally:
        fa.SPILL_BYTES = spill


def test_typed_values_take_no_object():
    c = Column("d")
    for i in range(1000):
        c.append(i / 7)
    assert not c.other and c.a.itemsize == 8
    q = Column("q")
    for i in range(1000):
        q.append(i * 1000)
    assert not q.other


@given(st.lists(st.tuples(st.one_of(st.integers(-3, 40), st.text(max_size=2), st.none(),
                                    st.integers(2 ** 24, 2 ** 30)),
                          st.integers(0, 10 ** 6))))
def test_id_index_is_a_dict(pairs):
    idx, ref = IdIndex(), {}
    for cid, row in pairs:
        idx.set(cid, row)
        ref[cid] = row
    for cid, _ in pairs:
        assert idx.get(cid) == ref[cid]
    for cid in (-5, 41, "zz", 2 ** 31, None, 3.5):
        assert idx.get(cid) == ref.get(cid, -1)
    assert idx.get([1]) == -1          # unhashable: never set
    assert len(idx.a) <= 41            # large ids did not stretch the array


@given(st.lists(st.tuples(st.sampled_from([0.0, 1.0, 1.5, 2.0]), st.integers(0, 3),
                          st.integers(0, 1)), max_size=40))
def test_order_by_equals_sorting_the_tuples(rows):
    cols = [Column("d"), Column("q"), bytearray()]
    for a, b, c in rows:
        cols[0].append(a)
        cols[1].append(b)
        cols[2].append(c)
    idx = order_by(cols)
    assert [rows[i] for i in idx] == sorted(rows)
    # ties keep row order (a stable sort)
    idx0 = order_by(cols[:1])
    assert idx0 == sorted(range(len(rows)), key=lambda i: rows[i][0])
    some = list(range(0, len(rows), 2))
    assert [rows[i] for i in order_by(cols, some)] == sorted(rows[i] for i in some)
    assert is_sorted(cols[0]) == (idx0 == list(range(len(rows))))


def test_is_sorted_with_none_is_false():
    c = Column("d")
    for v in (1.0, None, 2.0):
        c.append(v)
    assert not is_sorted(c)


_KEYS = st.one_of(st.integers(0, 40), st.integers(0, 2 ** 128 - 1),
                  st.sampled_from([2 ** 128, 2 ** 300 + 5, -1, (1, 2), "k", 0]))
_VALUES = st.tuples(st.one_of(st.integers(0, 2 ** 62 - 1), st.sampled_from([2 ** 62, -1, 0])),
                    st.one_of(st.integers(0, 2 ** 64 - 1), st.sampled_from([2 ** 64, -3])))


@given(st.lists(st.tuples(st.sampled_from(["set", "pop", "del", "get", "incr"]), _KEYS,
                          _VALUES), max_size=400))
def test_a_key_table_acts_as_a_dict(ops):
    """KeyTable against a dict: every key and value kept exactly, those that do not fit
    its arrays too; deletions, re-insertions, counts (incr) and resizes in between; with
    its arrays in memory and in a file mapping."""
    for spill in (fa.SPILL_BYTES, 0):
        old_spill, fa.SPILL_BYTES = fa.SPILL_BYTES, spill
        try:
            _key_table_against_a_dict(ops)
        finally:
            fa.SPILL_BYTES = old_spill


def _key_table_against_a_dict(ops):
    t, ref = KeyTable(), {}
    for op, k, v in ops:
        if op == "set":
            t[k] = v
            ref[k] = v
        elif op == "pop":
            assert t.pop(k) == ref.pop(k, None)
        elif op == "incr":
            old = ref.get(k)
            ref[k] = (1, 0) if old is None else (old[0] + 1, old[1])
            assert t.incr(k) == ref[k][0]
        elif op == "del":
            if k in ref:
                del t[k]
                del ref[k]
            else:
                try:
                    del t[k]
                except KeyError:
                    pass
                else:
                    raise AssertionError("deleted a key it did not have")
        assert t.get(k) == ref.get(k)
        assert (k in t) == (k in ref)
        assert len(t) == len(ref) and bool(t) == bool(ref)
    assert dict(t.items()) == ref
    t.clear()
    assert not t and len(t) == 0 and list(t.items()) == []


def test_a_key_table_holds_many_keys_in_its_arrays():
    """Ten thousand 96-bit keys (IPv4 connection keys), half deleted and put back: all in
    the arrays (no dict beside them), at most two thirds of the slots filled."""
    t = KeyTable()
    keys = [(i * 0x9E3779B1 << 48 | i * 7919) % 2 ** 96 for i in range(10000)]
    for i, k in enumerate(keys):
        t[k] = (i, i << 32 | 5)
    for k in keys[::2]:
        del t[k]
    for i, k in enumerate(keys[::2]):
        t[k] = (i + 1, 0)
    assert len(t) == 10000 and not t._other
    assert t._map is not None   # 16384 slots of 32 bytes: a file mapping
    assert 3 * t._filled <= 2 * (t._mask + 1)
    assert t.get(keys[1]) == (1, 1 << 32 | 5) and t.get(keys[2]) == (2, 0)
