"""Bytes out of a mapped capture on the per-packet path.

``span(buf, view, start, end)`` is ``buf[start:end]`` (``view``: a byte view of ``buf``).
Compiled, modules that ``cimport dissect.buffers`` (in their ``.pxd``) get the inline C
version from ``buffers.pxd``, which copies the bytes straight out of the view instead of
slicing the mapped file through a slice object. This module itself is never compiled; as
Python it is the reference.
"""

from __future__ import annotations


def span(buf, view, start: int, end: int) -> bytes:
    return buf[start:end]
