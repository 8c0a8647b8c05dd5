"""Records kept on disk while a run goes on, read back one batch at a time.

A :class:`RecordStore` is an append-only list of records (dicts) whose full batches are
pickled into a :class:`~dissect.spill.Spill` (the kernel's page cache, not the process's
own memory); only the batch being filled stays in memory. Iterating reads the batches
back in order, so a consumer that keeps nothing of a record (an observer,
:mod:`dissect.analysis.observe`) goes over every record of a capture without the process
holding them all. :meth:`RecordStore.get` reads one record by position (the batch it is in
is kept, with a few others, for the next reads).

A store can also be opened on the batches another process wrote to a file
(:meth:`RecordStore.from_file`, the workers of a split run): :meth:`RecordStore.write_to`
writes each batch's pickled bytes with its length in front, without unpickling them.

``wrap``/``unwrap`` turn a batch into what is pickled and back (TCP connection records
pickle as tuples of their values: :func:`dissect.analysis.tcp.wrap_records`).
"""

from __future__ import annotations

import os
import pickle
import struct

from dissect.columns.filearray import FileArray
from dissect.spill import Spill

# Records per pickled batch: large enough that pickling is cheap per record, small enough
# that the batch being filled (and the few read back) stay small.
BATCH = 512
# Batches read back by get() kept unpickled, the least recently read dropped first (reads
# by position mostly go forwards, but the records of dormant connections are stored in the
# order they went dormant, not by id). A store read once in nearly sequential order sets its
# own ``cached`` lower (TcpAnalyzer.drain_store: 8 batches of connection records were 3 MB
# at the end of a worker's pass, where its memory peaks).
CACHED = 8

_LEN = struct.Struct("<Q")


def _same(x):
    return x


class FileBlobs:
    """Blobs at (offset, length) of an open file (a worker's result file)."""

    def __init__(self, fd: int):
        self.fd = fd

    def get(self, ref) -> bytes:
        off, n = ref
        data = os.pread(self.fd, n, off)
        if len(data) != n:
            raise OSError(f"record file cut short: {len(data)} of {n} bytes at offset {off}")
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self):
        try:
            self.close()
        except Exception:   # at interpreter exit the os module may already be gone
            pass


class _Appends:
    """extend() and += for a class with append()."""

    def extend(self, items) -> None:
        for x in items:
            self.append(x)

    def __iadd__(self, items):
        self.extend(items)
        return self


class RecordStore(_Appends):
    def __init__(self, wrap=None, unwrap=None, batch: int | None = None,
                 prefix: str = "dissect-rec-"):
        self._wrap = wrap or _same
        self._unwrap = unwrap or _same
        self._batch = batch or BATCH
        self._prefix = prefix
        self._src = None            # a Spill, or FileBlobs for a store read from a file
        # per stored batch: its blob's number in the Spill (or, for a store read from a
        # FileBlobs file, its offset there, and its length in _rlen, which only such a
        # store fills), its first record's position and its number of records: columns,
        # in file mappings once many (a long run's stores make thousands of batches)
        self._ref = FileArray("q")
        self._rlen = FileArray("q")
        self._first = FileArray("q")
        self._count = FileArray("q")
        self._tail: list = []       # the batch being filled
        self._n = 0                 # records in stored batches
        self._cache: dict = {}      # batch index -> its records (get), least recent first
        self.cached = CACHED        # how many batches _cache keeps
        self.types: set = set()     # the record types appended (their "type")
        # records in all (len(): a plain attribute, read for every segment of a split
        # run, where len() of a compiled class still calls a Python method)
        self.size = 0

    # ------------------------------------------------------------------ writing
    def append(self, r) -> None:
        t = self._tail
        t.append(r)
        self.size += 1
        self.types.add(r.get("type"))
        if len(t) >= self._batch:
            self.flush()

    def append_wrapped(self, item, rtype) -> None:
        """Append a record as ``wrap`` makes it (of type ``rtype``); it is unwrapped when
        read, like the others."""
        t = self._tail
        t.append(item)
        self.size += 1
        self.types.add(rtype)
        if len(t) >= self._batch:
            self.flush()

    def flush(self) -> None:
        """Put the batch being filled on disk (a no-op when it is empty)."""
        t = self._tail
        if not t:
            return
        if self._src is None:
            self._src = Spill(self._prefix)
        blob = pickle.dumps(self._wrap(t), pickle.HIGHEST_PROTOCOL)
        self._ref.append(self._src.put(blob))
        self._first.append(self._n)
        self._count.append(len(t))
        self._n += len(t)
        self._tail = []

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    def _blob(self, k: int) -> bytes:
        """Batch ``k`` as pickled."""
        src = self._src
        if type(src) is FileBlobs:
            return src.get((self._ref[k], self._rlen[k]))
        return src.get(self._ref[k])

    def _load(self, k: int) -> list:
        return self._unwrap(pickle.loads(self._blob(k)))

    def __iter__(self):
        for k in range(len(self._first)):
            yield from self._load(k)
        yield from self._unwrap(self._tail)

    def iter_from(self, pos: int):
        """The records from position ``pos`` on."""
        if pos >= self._n:
            yield from self._unwrap(self._tail[pos - self._n:])
            return
        for k in range(len(self._first)):
            first = self._first[k]
            if first + self._count[k] <= pos:
                continue
            batch = self._load(k)
            yield from (batch[pos - first:] if pos > first else batch)
        yield from self._unwrap(self._tail)

    def get(self, pos: int):
        """The record at position ``pos``."""
        if pos >= self._n:
            return self._unwrap(self._tail[pos - self._n:pos - self._n + 1])[0]
        k = self._find(pos)
        return self._cached(k, False)[pos - self._first[k]]

    def _cached(self, k: int, wrapped: bool) -> list:
        """Batch ``k`` (as pickled when ``wrapped``), kept with the last few read."""
        key = ~k if wrapped else k          # the two kinds share the cache, apart
        cache = self._cache
        batch = cache.pop(key, None)
        if batch is None:
            while len(cache) >= max(1, self.cached):
                cache.pop(next(iter(cache)))
            batch = pickle.loads(self._blob(k))
            if not wrapped:
                batch = self._unwrap(batch)
        cache[key] = batch                  # (the most recent last)
        return batch

    def get_wrapped(self, pos: int):
        """The record at position ``pos`` as ``wrap`` made it (not unwrapped: for copying
        it into another store of the same kind without rebuilding it)."""
        if pos >= self._n:
            return self._wrap([self._tail[pos - self._n]])[0]
        k = self._find(pos)
        return self._cached(k, True)[pos - self._first[k]]

    def _find(self, pos: int) -> int:
        lo, hi = 0, len(self._first) - 1
        first = self._first
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if first[mid] <= pos:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def to_list(self) -> list:
        return list(self)

    # ------------------------------------------------------------------ hand-over
    def write_to(self, f) -> int:
        """Write every batch (the one being filled too) to the binary file ``f`` as
        (8-byte length, pickled batch) items; the number of records written."""
        self.flush()
        for k in range(len(self._first)):
            blob = self._blob(k)
            f.write(_LEN.pack(len(blob)))
            f.write(blob)
        return self._n

    @classmethod
    def from_file(cls, blobs: "FileBlobs", offset: int, counts: list, types: set,
                  wrap=None, unwrap=None) -> tuple["RecordStore", int]:
        """A store reading the batches :meth:`write_to` wrote at ``offset`` of the file
        ``blobs`` reads (``counts``: records per batch, ``types``: the writer's
        :attr:`types`); and the offset after them. Several stores may read one file; it is
        closed when the last of them is gone."""
        st = cls(wrap, unwrap)
        st.types = set(types)
        st._src = blobs
        off = offset
        for k in range(len(counts)):
            n = _LEN.unpack(blobs.get((off, 8)))[0]
            st._ref.append(off + 8)
            st._rlen.append(n)
            st._first.append(st._n)
            st._count.append(counts[k])
            st._n += counts[k]
            off += 8 + n
        st.size = st._n
        return st, off

    def counts(self) -> list:
        """Records per stored batch (after :meth:`flush`)."""
        return self._count.tolist()

    def close(self) -> None:
        """Drop the file behind the store (the store is empty afterwards)."""
        src, self._src = self._src, None
        if type(src) is Spill:
            src.close()     # a shared file closes when its last reader is gone
        self._ref, self._rlen = FileArray("q"), FileArray("q")
        self._first, self._count = FileArray("q"), FileArray("q")
        self._tail, self._n, self._cache = [], 0, {}
        self.size = 0

    def __reduce__(self):
        # a store crossing a process boundary (dask) goes as its records
        return (_from_list, (self.to_list(), self._wrap, self._unwrap))


def _from_list(items, wrap, unwrap) -> RecordStore:
    st = RecordStore(wrap, unwrap)
    st.extend(items)
    return st


class RecordKeys(_Appends):
    """The merge keys of a split run's application records (dissect.parallel), as three
    columns instead of a tuple per record: a key ``(phase, x)``, ``x`` a number or a pair
    of numbers, is kept as ``(phase, a, b)``, which sorts the same way."""

    def __init__(self):
        # in file mappings once large (dissect.columns.filearray)
        self.phase = FileArray("b")
        self.a = FileArray("q")
        self.b = FileArray("q")

    def append(self, key) -> None:
        phase, x = key
        if type(x) is tuple:
            a, b = x
        else:
            a, b = x, 0
        self.phase.append(phase)
        self.a.append(a)
        self.b.append(b)

    def __len__(self) -> int:
        return len(self.phase)

    def __getitem__(self, i: int) -> tuple:
        return (self.phase[i], self.a[i], self.b[i])
