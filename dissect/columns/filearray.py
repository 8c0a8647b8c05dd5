"""Typed arrays that move to a memory-mapped temporary file once they are large.

What an analysis keeps per connection until the end of a run (the dormant connections'
keys and slots, the SYN and retransmission columns, the records' merge keys...) grows with
the capture's length even when the number of concurrent connections does not. Held in
``array`` objects, it is the process's own (anonymous) memory, and so is the heap the
arrays leave behind as they double. A :class:`FileArray` starts as an ``array`` and, once
larger than ``SPILL_BYTES``, moves into a shared mapping of an unlinked temporary file
(``$TMPDIR``, else /tmp): its pages are then the kernel's page cache, which the kernel
writes back and drops when it needs the memory, as it does with the pages of a
memory-mapped capture and with :mod:`dissect.spill`'s files. :func:`zeros` gives such a
mapping of a fixed size (dissect.columns.compact.KeyTable's arrays).

Where no file can be made, mapped or grown (no space, a read-only temporary directory),
the data stays in memory: the results are the same, only the memory is not saved.

A mapping is shared by the processes a fork makes. Whatever owns one registers here, and a
child process copies every registered mapping into a file of its own right after a fork
(``os.register_at_fork``), so neither process ever writes over the other's data.
"""

from __future__ import annotations

import mmap
import os
import tempfile
import weakref
from array import array

# An array larger than this (bytes) moves to a file. Small arrays stay in memory: a short
# capture never makes a file (tests set it to 0 to map every array at once).
SPILL_BYTES = 16 * 1024

_OWNERS: weakref.WeakSet = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for owner in list(_OWNERS):
        owner._own_copy()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _map(nbytes: int):
    """A shared mapping of a new unlinked temporary file of ``nbytes`` (zeros), and the
    file's descriptor; None when that cannot be done."""
    try:
        fd, path = tempfile.mkstemp(prefix="dissect-array-")
    except OSError:
        return None
    try:
        os.unlink(path)
        os.ftruncate(fd, max(nbytes, 1))
        return mmap.mmap(fd, max(nbytes, 1)), fd
    except (OSError, ValueError):
        os.close(fd)
        return None


def _grow(mm, fd: int, nbytes: int):
    """``mm`` (of file ``fd``) grown to ``nbytes``; None when the file cannot grow (then
    ``mm`` is as it was)."""
    try:
        os.ftruncate(fd, nbytes)
        mm.resize(nbytes)
        return mm
    except (OSError, ValueError, BufferError):
        return None


class Zeros:
    """A fixed-size block of zeros in a file mapping (see the module's doc), viewed as
    ``count`` items of type ``typecode`` (``view``), for owners that index it themselves;
    None from :func:`zeros` when it stays in memory."""

    __slots__ = ("mm", "fd", "view", "__weakref__")

    def __init__(self, mm, fd, typecode: str):
        self.mm, self.fd = mm, fd
        self.view = memoryview(mm).cast(typecode)

    def close(self) -> None:
        if self.fd >= 0:
            self.view.release()
            try:
                self.mm.close()
            except BufferError:     # someone still views it: unmapped when it lets go
                pass
            os.close(self.fd)
            self.fd = -1

    def __del__(self):
        try:
            self.close()
        except Exception:   # at interpreter exit the os module may already be gone
            pass


def zeros(count: int, typecode: str = "Q"):
    """``count`` zero items of ``typecode`` as a :class:`Zeros` file mapping when that is
    larger than SPILL_BYTES and a file can be made, else an ``array``."""
    size = array(typecode).itemsize * count
    if size > SPILL_BYTES:
        m = _map(size)
        if m is not None:
            return Zeros(m[0], m[1], typecode)
    return array(typecode, bytes(size))


class FileArray:
    """An append-only-or-assign typed array (``array``'s typecodes) that is an ``array``
    while it is small and a view of a file mapping once larger than SPILL_BYTES (see the
    module's doc). Values outside the type's range are refused as ``array`` refuses them
    (OverflowError or TypeError). Pickles as its values."""

    __slots__ = ("typecode", "_a", "_mm", "_fd", "_view", "_n", "_limit", "__weakref__")

    def __init__(self, typecode: str, values=()):
        self.typecode = typecode
        self._a = array(typecode, values)
        self._mm = None
        self._fd = -1
        self._view = None
        self._n = 0
        # items an in-memory array holds before it moves (SPILL_BYTES when it was made)
        self._limit = SPILL_BYTES // self._a.itemsize
        if len(self._a) > self._limit:
            self._spill()

    # ------------------------------------------------------------------ storage
    def _spill(self) -> None:
        """Move the values into a file mapping twice their size (they stay in memory when
        no file can be used)."""
        a = self._a
        n = len(a)
        m = _map(max(2 * n, 16) * a.itemsize)
        if m is None:
            return
        self._mm, self._fd = m
        self._mm[: n * a.itemsize] = a.tobytes()
        self._view = memoryview(self._mm).cast(self.typecode)
        self._n = n
        self._a = None
        _OWNERS.add(self)

    def _more(self) -> None:
        """Room for twice the items; back to an array when the file cannot grow."""
        v = self._view
        cap = len(v)
        v.release()
        self._view = None
        size = self.itemsize
        mm = _grow(self._mm, self._fd, 2 * cap * size)
        if mm is None:
            self._a = array(self.typecode, self._mm[: self._n * size])
            self._unmap()
            return
        self._view = memoryview(mm).cast(self.typecode)

    def _unmap(self) -> None:
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._mm is not None:
            self._mm.close()
            os.close(self._fd)
            self._mm, self._fd = None, -1
            _OWNERS.discard(self)

    def _own_copy(self) -> None:
        """After a fork: the values into a file of this process's own."""
        if self._mm is not None:
            a = array(self.typecode, self._view[: self._n])
            self._unmap()
            self._a = a
            self._spill()

    def close(self) -> None:
        """Give the file back (the values are gone)."""
        self._unmap()
        self._a = array(self.typecode)
        self._n = 0

    def __del__(self):
        try:
            self._unmap()
        except Exception:   # at interpreter exit the os module may already be gone
            pass

    @property
    def mapped(self) -> bool:
        """Whether the values are in a file mapping (else in memory)."""
        return self._view is not None

    # ------------------------------------------------------------------ the array's API
    @property
    def itemsize(self) -> int:
        return array(self.typecode).itemsize

    def append(self, v) -> None:
        a = self._a
        if a is not None:
            a.append(v)
            if len(a) > self._limit:
                self._spill()
            return
        n = self._n
        if n == len(self._view):
            self._more()
            if self._a is not None:
                self._a.append(v)
                return
        try:
            self._view[n] = v
        except ValueError:  # the view says ValueError where array says OverflowError
            array(self.typecode, [v])   # raises what array raises
            raise
        self._n = n + 1

    def extend(self, values) -> None:
        a = self._a
        if a is not None:
            a.extend(values)
            if len(a) > self._limit:
                self._spill()
            return
        for v in values:
            self.append(v)

    def resize_zero(self, n: int) -> None:
        """Zeros appended up to length ``n`` (no change when it is that long already)."""
        if n <= len(self):
            return
        a = self._a
        if a is not None:
            a.frombytes(bytes((n - len(a)) * a.itemsize))
            if len(a) > self._limit:
                self._spill()
            return
        while len(self._view) < n:
            self._more()
            if self._a is not None:
                self._a.frombytes(bytes((n - len(self._a)) * self._a.itemsize))
                return
        self._n = n     # a grown file reads as zeros past the old length

    def __len__(self) -> int:
        a = self._a
        return len(a) if a is not None else self._n

    def __getitem__(self, i):
        a = self._a
        if a is not None:
            return a[i]
        n = self._n
        if type(i) is slice:
            return array(self.typecode, self._view[:n][i])
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("array index out of range")
        return self._view[i]

    def __setitem__(self, i: int, v) -> None:
        a = self._a
        if a is not None:
            a[i] = v
            return
        n = self._n
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("array assignment index out of range")
        try:
            self._view[i] = v
        except ValueError:
            array(self.typecode, [v])
            raise

    def __iter__(self):
        a = self._a
        if a is not None:
            return iter(a)
        return self._chunks()

    def _chunks(self):
        # a few thousand values at a time: reading a mapped array back makes no list of it
        i = 0
        while i < self._n:
            j = min(self._n, i + 4096)
            yield from self._view[i:j].tolist()
            i = j

    def tolist(self) -> list:
        a = self._a
        return a.tolist() if a is not None else self._view[: self._n].tolist()

    def tobytes(self) -> bytes:
        a = self._a
        return a.tobytes() if a is not None else self._view[: self._n].tobytes()

    def to_array(self) -> array:
        return array(self.typecode, self.tobytes()) if self._a is None else array(
            self.typecode, self._a)

    def __repr__(self) -> str:
        where = "file" if self._a is None else "memory"
        return f"FileArray({self.typecode!r}, {len(self)} items in {where})"

    def __reduce__(self):
        return (_rebuild, (self.typecode, self.tobytes()))


def _rebuild(typecode: str, data: bytes) -> FileArray:
    a = array(typecode)
    a.frombytes(data)
    return FileArray(typecode, a)
