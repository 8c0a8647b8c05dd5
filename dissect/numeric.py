"""Number conversions of the per-packet path whose compiled versions are C arithmetic.

``snap_ns(seconds, snap)``: ``seconds`` as whole nanoseconds, rounded half to even like
Python's ``round``, then taken as the nearest whole microsecond when it is within ``snap``
ns of it. Compiled, modules that ``cimport dissect.numeric`` (in their ``.pxd``) get the
inline C version from ``numeric.pxd``: the same IEEE double arithmetic with ``rint``
(round half to even) instead of Python integers, for values that fit a 64-bit integer.
This module itself is never compiled; as Python it is the reference.
"""

from __future__ import annotations


def snap_ns(seconds: float, snap: int) -> int:
    ns = round(seconds * 1e9)
    us = round(ns / 1000) * 1000
    return us if abs(ns - us) <= snap else ns
