"""Making and reading the per-packet NamedTuples (Frame, TcpSegment, PacketVerdict...)
without Python-level calls or attribute lookups once compiled.

``make(cls, values)`` is ``tuple.__new__(cls, values)``: a ``cls`` instance holding
``values``. Compiled, modules that ``cimport dissect.tuples`` (in their ``.pxd``) get the
inline C version from ``tuples.pxd`` instead, which allocates the instance and copies the
values in without a Python call.

``view(t)`` is ``t`` itself. Compiled, it is ``t`` declared a tuple, so that unpacking it
(``number, ts, caplen, wirelen, linktype, iface, data = view(frame)``: every item named,
as a starred target would build a list) reads the items straight from the tuple: a NamedTuple's
attribute lookup goes through the type's dictionary and a descriptor each time, and
unpacking an object that is not known to be a tuple iterates it.

This module itself is never compiled; as Python it is the reference.
"""

from __future__ import annotations

make = tuple.__new__


def view(t: tuple) -> tuple:
    if not isinstance(t, tuple):
        raise TypeError(f"not a tuple: {type(t).__name__}")
    return t
