# C layout of one stream direction for the compiled build (scripts/build_speedups.py;
# Cython's augmenting declarations, see dissect/analysis/tcp.pxd). reassembly.py stays the
# reference. Offsets are unwrapped sequence numbers (64-bit); those that can be None stay
# objects.

import cython

# module constants as C integers (reassembly.py re-exports them as Python names at its end)
cdef long long M32, HALF

cdef class _Half:
    cdef public object next, fin_at, tail
    cdef public long long lastraw, lastabs, held_bytes, tail_start, tail_base
    cdef public long long delivered, gapped, overlaps, mismatches
    cdef public bint started
    cdef public list held

    @cython.locals(d=cython.longlong, a=cython.longlong)
    cpdef long long unwrap(self, long long raw)
