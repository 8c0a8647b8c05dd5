"""Bytes kept on disk instead of in the process's memory.

A :class:`Spill` is an append-only store in an unlinked temporary file (``$TMPDIR``, else
/tmp): :meth:`Spill.put` writes a blob and returns a reference to it, :meth:`Spill.get`
reads it back. Its pages are the kernel's page cache, not the process's own (anonymous)
memory, so what is put there does not make the analysis grow. Where the file cannot be
made or written (no space, a read-only temporary directory) the blob is kept in memory
instead and the reference is the blob itself: the analysis gives the same results, it only
uses more memory.

The TCP analyzer keeps the pickled state of its dormant connections here.
"""

from __future__ import annotations

import os
import tempfile


class Spill:
    def __init__(self, prefix: str = "dissect-spill-"):
        self._prefix = prefix
        self._fd = -1
        self._failed = False
        self.size = 0           # bytes written to the file
        self.in_memory = 0      # blobs kept in memory because the file could not be used

    def put(self, blob: bytes):
        """A reference to ``blob``: ``(offset, length)`` in the file, or ``blob`` itself
        when the file cannot be used."""
        if not self._failed:
            try:
                if self._fd < 0:
                    fd, path = tempfile.mkstemp(prefix=self._prefix)
                    os.unlink(path)
                    self._fd = fd
                off = self.size
                view = memoryview(blob)
                while view:
                    n = os.pwrite(self._fd, view, off + len(blob) - len(view))
                    view = view[n:]
                self.size += len(blob)
                return (off, len(blob))
            except OSError:
                self._failed = True
        self.in_memory += 1
        return blob

    def get(self, ref) -> bytes:
        """The blob ``put`` returned ``ref`` for."""
        if type(ref) is not tuple:
            return ref
        off, n = ref
        data = os.pread(self._fd, n, off)
        if len(data) != n:
            raise OSError(f"spill file cut short: {len(data)} of {n} bytes at offset {off}")
        return data

    def close(self) -> None:
        """Drop the file (every reference is invalid afterwards)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.size = 0

    def __del__(self):
        self.close()

    def __reduce__(self):
        raise TypeError("a Spill holds an open file and cannot be pickled")
