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

from dissect.columns.filearray import _OWNERS, FileArray, zeros

_NAN = float("nan")
_INT_SENTINEL = -(2 ** 63)
_NOT_KEPT = object()
# TCP connection ids above this go to IdIndex's dict: a hostile id must not make the
# array as long as itself
_DENSE_IDS = 1 << 24


class Column:
    """A list of scalars in a typed array (typecode ``"d"``: floats, ``"q"``: ints);
    values of another type are kept aside by position, but None, which takes no room: a
    marked position (NaN, or the int sentinel) not in ``other`` holds None."""

    __slots__ = ("a", "other", "_float", "nones")

    def __init__(self, typecode: str = "d", mapped: bool = False):
        # ``mapped``: the array is a FileArray (in a file mapping once large) - for columns
        # that grow with the capture's length during the pass, where memory peaks; the
        # others keep a plain array, read and appended to in C
        self.a = FileArray(typecode) if mapped else array(typecode)
        self.other: dict = {}
        self.nones = 0          # how many values are None
        self._float = typecode == "d"

    @property
    def irregular(self) -> bool:
        """Whether any value is not in the array (None, or another type)."""
        return self.nones > 0 or bool(self.other)

    def append(self, v) -> None:
        a = self.a
        if self._float:
            if type(v) is float and v == v:
                a.append(v)
                return
            if v is None:
                self.nones += 1
            else:
                self.other[len(a)] = v
            a.append(_NAN)
            return
        if type(v) is int and _INT_SENTINEL < v < -_INT_SENTINEL:
            a.append(v)
            return
        if v is None:
            self.nones += 1
        else:
            self.other[len(a)] = v
        a.append(_INT_SENTINEL)

    def __getitem__(self, i: int):
        x = self.a[i]
        if self._float:
            if x == x:
                return x
        elif x != _INT_SENTINEL:
            return x
        if i < 0:
            i += len(self.a)
        return self.other.get(i)

    def __setitem__(self, i: int, v) -> None:
        a = self.a
        if i < 0:
            i += len(a)
        old = a[i]
        # a marked value there: kept aside (dropped now), else None (one fewer)
        marked = (old != old) if self._float else (old == _INT_SENTINEL)
        if marked and self.other.pop(i, _NOT_KEPT) is _NOT_KEPT:
            self.nones -= 1
        if self._float:
            if type(v) is float and v == v:
                a[i] = v
                return
            a[i] = _NAN
        else:
            if type(v) is int and _INT_SENTINEL < v < -_INT_SENTINEL:
                a[i] = v
                return
            a[i] = _INT_SENTINEL
        if v is None:
            self.nones += 1
        else:
            self.other[i] = v

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


# KeyTable: slots are empty (0), free again (1: a deleted entry, probing goes on past it)
# or hold an entry (its first value + 2)
_EMPTY, _GONE = 0, 1
_K64 = (1 << 64) - 1
_M1, _M2 = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F
# a Python int (no C type): a key's high word times it is made in Python ints, never
# shifted past a C integer's 64 bits
_TWO64 = 1 << 64


class KeyTable:
    """A hash table from int keys below 2**128 to pairs of ints (``a`` below 2**62,
    ``b`` below 2**64), held in four typed arrays: 32 bytes a slot, at most two thirds
    of the slots used, and not one Python object an entry (a dict of int keys to tuples
    costs about 130 bytes an entry, in objects that stay scattered over the heap). Any
    other key or value (a larger int, a tuple) goes to a dict beside it, so every key and
    value is kept exactly. Open addressing with linear probing; deleted slots are reused
    and dropped at the next resize. A large table's arrays are a file mapping
    (dissect.columns.filearray: page cache, not the process's own memory)."""

    __slots__ = ("_kh", "_kl", "_a", "_b", "_mask", "_used", "_filled", "_other", "_map",
                 "__weakref__")

    def __init__(self):
        self._other: dict = {}
        self._map = None
        self._alloc(8)

    def _alloc(self, n: int) -> None:
        z = zeros(4 * n)
        if type(z) is array:
            self._kh, self._kl, self._a, self._b = z[:n], z[n:2 * n], z[2 * n:3 * n], z[3 * n:]
            self._map = None
        else:
            v = z.view
            self._kh, self._kl, self._a, self._b = v[:n], v[n:2 * n], v[2 * n:3 * n], v[3 * n:]
            self._map = z
            _OWNERS.add(self)
        self._mask = n - 1
        self._used = 0      # entries
        self._filled = 0    # entries and deleted slots

    def _own_copy(self) -> None:
        """After a fork (dissect.columns.filearray): the arrays into a mapping of this
        process's own."""
        if self._map is None:
            return
        kh, kl, a, b, old = self._kh, self._kl, self._a, self._b, self._map
        used, filled = self._used, self._filled
        n = self._mask + 1
        self._alloc(n)
        for i in range(n):
            self._kh[i], self._kl[i], self._a[i], self._b[i] = kh[i], kl[i], a[i], b[i]
        self._used, self._filled = used, filled
        old.close()

    def _slot(self, key: int) -> int:
        """The slot of ``key``, or the first free one of its probe sequence (-1 - slot)."""
        kh = key >> 64
        kl = key & _K64
        h = ((kh * _M1) & _K64) ^ ((kl * _M2) & _K64)
        h ^= h >> 29
        mask = self._mask
        i = h & mask
        free = -1
        while True:
            s = self._a[i]
            if s == _EMPTY:
                return -1 - (i if free < 0 else free)
            if s == _GONE:
                if free < 0:
                    free = i
            elif self._kh[i] == kh and self._kl[i] == kl:
                return i
            i = (i + 1) & mask

    @staticmethod
    def _fits(key, a, b) -> bool:
        return (type(key) is int and 0 <= key < 1 << 128 and type(a) is int
                and 0 <= a < 1 << 62 and type(b) is int and 0 <= b <= _K64)

    def get(self, key, default=None):
        if type(key) is int and 0 <= key < 1 << 128:
            i = self._slot(key)
            if i >= 0:
                return (self._a[i] - 2, self._b[i])
        if self._other:
            return self._other.get(key, default)
        return default

    def __setitem__(self, key, value) -> None:
        a, b = value
        if not self._fits(key, a, b):
            self.pop(key)
            self._other[key] = (a, b)
            return
        self._other.pop(key, None)
        i = self._slot(key)
        if i < 0:
            i = -1 - i
            if self._a[i] == _EMPTY:
                self._filled += 1
            self._used += 1
            self._kh[i] = key >> 64
            self._kl[i] = key & _K64
        self._a[i] = a + 2
        self._b[i] = b
        if 3 * self._filled > 2 * (self._mask + 1):
            self._resize()

    def incr(self, key) -> int:
        """One more for ``key``: its first value goes up by one (a new key starts at 1,
        its second value 0); the new count."""
        if type(key) is int and 0 <= key < 1 << 128 and not self._other:
            i = self._slot(key)
            if i >= 0 and self._a[i] < (1 << 62) + 1:
                self._a[i] += 1
                return self._a[i] - 2
        c = self.get(key)
        n = 1 if c is None else c[0] + 1
        self[key] = (n, 0 if c is None else c[1])
        return n

    def pop(self, key, default=None):
        if type(key) is int and 0 <= key < 1 << 128:
            i = self._slot(key)
            if i >= 0:
                out = (self._a[i] - 2, self._b[i])
                self._a[i] = _GONE
                self._used -= 1
                return out
        if self._other:
            return self._other.pop(key, default)
        return default

    def __delitem__(self, key) -> None:
        if self.pop(key, self) is self:
            raise KeyError(key)

    def _resize(self) -> None:
        kh, kl, a, b = self._kh, self._kl, self._a, self._b
        old = self._map     # the old arrays' mapping lives until they are copied
        n = 8
        while 3 * self._used >= n:     # at most a third used after a resize
            n *= 2
        self._alloc(n)
        for i in range(len(a)):
            s = a[i]
            if s > _GONE:
                j = -1 - self._slot(kh[i] * _TWO64 | kl[i])
                self._kh[j], self._kl[j], self._a[j], self._b[j] = kh[i], kl[i], s, b[i]
                self._used += 1
                self._filled += 1
        del old

    def __len__(self) -> int:
        return self._used + len(self._other)

    def __bool__(self) -> bool:
        return self._used > 0 or bool(self._other)

    def __contains__(self, key) -> bool:
        return self.get(key, self) is not self

    def clear(self) -> None:
        self._other = {}
        self._alloc(8)

    def items(self):
        """(key, (a, b)) of every entry, in no particular order."""
        kh, kl, a, b = self._kh, self._kl, self._a, self._b
        for i in range(len(a)):
            if a[i] > _GONE:
                yield kh[i] * _TWO64 | kl[i], (a[i] - 2, b[i])
        yield from self._other.items()
