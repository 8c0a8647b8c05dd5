"""Bytes kept on disk instead of in the process's memory.

A :class:`Spill` is an append-only store in an unlinked temporary file (``$TMPDIR``, else
/tmp): :meth:`Spill.put` writes a blob and returns its number (0, 1, 2...), :meth:`Spill.get`
reads it back. Its pages are the kernel's page cache, not the process's own (anonymous)
memory, so what is put there does not make the analysis grow; nor do the blobs' places
(file, offset, length: columns, in file mappings once many). Where the file cannot be made
or written (no space, a read-only temporary directory) the blob is kept in memory instead:
the analysis gives the same results, it only uses more memory.

A process forked while a spill is open (a worker) still reads what was put before the
fork from the inherited file, whose written part neither process changes again, and writes
what it puts itself to a file of its own: the two never write over each other.

The TCP analyzer keeps the pickled state of its dormant connections here.
"""

from __future__ import annotations

import os
import tempfile

from dissect.columns.filearray import FileArray


class Spill:
    def __init__(self, prefix: str = "dissect-spill-"):
        self._prefix = prefix
        self._fds: list[int] = []   # the files written so far; the last one is written
        self._pid = -1              # the process that opened the last one
        self._failed = False
        self.size = 0           # bytes written to the last file
        self.in_memory = 0      # blobs kept in memory because no file could be used
        # by blob number: its file (an index into _fds; -1: in _mem), offset and length
        self._file = FileArray("l")
        self._off = FileArray("q")
        self._len = FileArray("q")
        self._mem: dict = {}

    def __len__(self) -> int:
        return len(self._file)

    def put(self, blob: bytes) -> int:
        """Write ``blob``; its number."""
        k = len(self._file)
        if not self._failed:
            try:
                if self._pid != os.getpid():    # the first put, or the first after a fork
                    fd, path = tempfile.mkstemp(prefix=self._prefix)
                    os.unlink(path)
                    self._fds.append(fd)
                    self._pid, self.size = os.getpid(), 0
                fd, off = self._fds[-1], self.size
                view = memoryview(blob)
                while view:
                    n = os.pwrite(fd, view, off + len(blob) - len(view))
                    view = view[n:]
                self.size += len(blob)
                self._file.append(len(self._fds) - 1)
                self._off.append(off)
                self._len.append(len(blob))
                return k
            except OSError:
                self._failed = True
        self.in_memory += 1
        self._mem[k] = blob
        self._file.append(-1)
        self._off.append(0)
        self._len.append(0)
        return k

    def get(self, k: int) -> bytes:
        """Blob number ``k``."""
        i = self._file[k]
        if i < 0:
            return self._mem[k]
        off, n = self._off[k], self._len[k]
        data = os.pread(self._fds[i], n, off)
        if len(data) != n:
            raise OSError(f"spill file cut short: {len(data)} of {n} bytes at offset {off}")
        return data

    def close(self) -> None:
        """Drop the files and the blobs (the spill is empty afterwards)."""
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)
        self._pid, self.size = -1, 0
        self._file, self._off, self._len = FileArray("l"), FileArray("q"), FileArray("q")
        self._mem = {}

    def __del__(self):
        try:
            self.close()
        except Exception:   # at interpreter exit the os module may already be gone
            pass

    def __reduce__(self):
        raise TypeError("a Spill holds an open file and cannot be pickled")
