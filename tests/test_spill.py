"""dissect.spill: blobs written to an unlinked temporary file and read back by number; the
in-memory fallback when no file can be used."""

from __future__ import annotations

import os
import pickle

import pytest

from dissect import spill as spillmod
from dissect.spill import Spill


def test_blobs_come_back_byte_for_byte():
    s = Spill()
    blobs = [b"", b"x", bytes(range(256)) * 300, os.urandom(70_000), b"last"]
    refs = [s.put(b) for b in blobs]
    assert refs == list(range(len(blobs))) and len(s) == len(blobs)
    assert s.size == sum(map(len, blobs)) and s.in_memory == 0
    # in any order, any number of times
    for r, b in reversed(list(zip(refs, blobs))):
        assert s.get(r) == b
    assert s.get(refs[1]) == b"x"
    s.close()


def test_the_file_is_unlinked_and_closed(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(spillmod.tempfile, "tempdir", None)
    s = Spill()
    s.put(b"state")
    assert list(tmp_path.iterdir()) == []          # no name on disk from the start
    fd = s._fds[-1]
    os.fstat(fd)
    s.close()
    with pytest.raises(OSError):
        os.fstat(fd)
    s.close()                                       # twice is harmless


def test_no_usable_file_keeps_blobs_in_memory(monkeypatch):
    def refuse(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(spillmod.tempfile, "mkstemp", refuse)
    s = Spill()
    refs = [s.put(b"a" * n) for n in (1, 10, 100)]
    assert [s.get(r) for r in refs] == [b"a", b"a" * 10, b"a" * 100]
    assert s.in_memory == 3 and s.size == 0


def test_a_failed_write_falls_back_for_that_blob_and_after(monkeypatch):
    s = Spill()
    first = s.put(b"on disk")
    real = os.pwrite

    def full(*a):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(spillmod.os, "pwrite", full)
    second = s.put(b"kept")
    monkeypatch.setattr(spillmod.os, "pwrite", real)
    third = s.put(b"still kept")                    # the file is not tried again
    assert (first, second, third) == (0, 1, 2) and s.in_memory == 2
    assert s.get(first) == b"on disk" and s.get(second) == b"kept"
    assert s.get(third) == b"still kept"


def test_a_spill_cannot_be_pickled():
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Spill())


def test_a_forked_process_reads_the_old_blobs_and_writes_its_own_file():
    s = Spill()
    before = s.put(b"put before the fork")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:        # the child: read the parent's blob, put its own, report
        ok = False
        try:
            os.close(r)
            mine = s.put(b"the child's")
            ok = (s.get(before) == b"put before the fork" and s._file[mine] == 1
                  and s.get(mine) == b"the child's")
        finally:
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
    os.close(w)
    # the parent goes on writing meanwhile; nothing overlaps the child's file
    after = s.put(b"the parent's, after the fork")
    assert os.read(r, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(r)
    assert s._file[after] == 0 and s.get(after) == b"the parent's, after the fork"
    assert s.get(before) == b"put before the fork"
    s.close()


def test_many_blobs_places_are_in_file_mappings(monkeypatch):
    """The blobs' places are columns: past the spill size, file mappings, not the
    process's memory; every blob still comes back."""
    from dissect.columns import filearray
    monkeypatch.setattr(filearray, "SPILL_BYTES", 1024)
    s = Spill()
    n = [s.put(str(i).encode()) for i in range(3000)]
    assert s._off.mapped and s._len.mapped and s._file.mapped
    assert [s.get(k) for k in n[::-1]] == [str(i).encode() for i in range(3000)][::-1]
    s.close()
    assert len(s) == 0
