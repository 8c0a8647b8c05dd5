"""Columns of scalars for analyses that keep something per connection or per request
until the end of a run: a typed ``array`` (8 bytes a value, or 4, or 1) instead of a
Python object and a list slot per value (about 40 to 60 bytes), and exact: a value that
does not fit the array's type (None, a string, an int too large, the sentinel itself) is
kept as it was, by position, so a read gives back what was appended.

``Column("d")`` holds floats (timestamps), ``Column("q")`` ints (frame numbers, status
codes); :class:`Sparse` holds values that are mostly None; :class:`IdIndex` maps
connection ids (TCP ids are 0..n-1, UDP ids strings) to row numbers in 4 bytes an id.
"""

from __future__ import annotations

from array import array

_NAN = float("nan")
_INT_SENTINEL = -(2 ** 63)
# TCP connection ids above this go to IdIndex's dict: a hostile id must not make the
# array as long as itself
_DENSE_IDS = 1 << 24


class Column:
    """A list of scalars in a typed array (typecode ``"d"``: floats, ``"q"``: ints);
    values of another type are kept aside by position."""

    __slots__ = ("a", "other", "_float")

    def __init__(self, typecode: str = "d"):
        self.a = array(typecode)
        self.other: dict = {}
        self._float = typecode == "d"

    def append(self, v) -> None:
        a = self.a
        if self._float:
            if type(v) is float and v == v:
                a.append(v)
                return
            self.other[len(a)] = v
            a.append(_NAN)
            return
        if type(v) is int and _INT_SENTINEL < v < -_INT_SENTINEL:
            a.append(v)
            return
        self.other[len(a)] = v
        a.append(_INT_SENTINEL)

    def __getitem__(self, i: int):
        x = self.a[i]
        if self._float:
            return self.other[i] if x != x else x
        return self.other[i] if x == _INT_SENTINEL else x

    def __len__(self) -> int:
        return len(self.a)


class Sparse:
    """A list of values that are mostly None: only the others are kept, by position."""

    __slots__ = ("n", "other")

    def __init__(self):
        self.n = 0
        self.other: dict = {}

    def append(self, v) -> None:
        if v is not None:
            self.other[self.n] = v
        self.n += 1

    def __getitem__(self, i: int):
        return self.other.get(i)

    def __len__(self) -> int:
        return self.n


class IdIndex:
    """Connection id -> row number (an int >= 0); ``get`` gives -1 for an id never set.
    Small non-negative int ids are positions in an array, any other id a dict key."""

    __slots__ = ("a", "other")

    def __init__(self):
        self.a = array("i")
        self.other: dict = {}

    def set(self, cid, row: int) -> None:
        if type(cid) is int and 0 <= cid < _DENSE_IDS:
            a = self.a
            if cid >= len(a):
                a.extend([-1] * (cid + 1 - len(a)))
            a[cid] = row
        else:
            self.other[cid] = row

    def get(self, cid) -> int:
        if type(cid) is int and 0 <= cid < len(self.a):
            return self.a[cid]
        try:
            return self.other.get(cid, -1)
        except TypeError:       # an unhashable id: never set
            return -1


def order_by(cols, rows=None) -> list[int]:
    """``rows`` (default: all the first column's) sorted by the columns' values (the first
    column first, ties by the next...), ties left in their order: what sorting the rows'
    tuples of those items gives, without making a tuple per row."""
    idx = list(range(len(cols[0])) if rows is None else rows)
    for col in reversed(cols):
        idx.sort(key=col.__getitem__)
    return idx


def is_sorted(col) -> bool:
    """Whether a column's values never decrease (then its rows are in sorted order)."""
    try:
        for i in range(1, len(col)):
            if col[i] < col[i - 1]:
                return False
    except TypeError:       # None among them: sorting says what is wrong
        return False
    return True
