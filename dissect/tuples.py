"""Making the per-packet NamedTuples (Frame, TcpSegment, PacketVerdict...) without their
Python-level ``__new__``.

``make(cls, values)`` is ``tuple.__new__(cls, values)``: a ``cls`` instance holding
``values``. Compiled, modules that ``cimport dissect.tuples`` (in their ``.pxd``) get the
inline C version from ``tuples.pxd`` instead, which allocates the instance and copies the
values in without a Python call (about a third of the cost of ``tuple.__new__``, measured).
This module itself is never compiled; as Python it is the reference.
"""

from __future__ import annotations

make = tuple.__new__
