# C layout of one stream direction for the compiled build (scripts/build_speedups.py;
# Cython's augmenting declarations, see dissect/analysis/tcp.pxd). reassembly.py stays the
# reference. Offsets are unwrapped sequence numbers (64-bit); those that can be None stay
# objects.

import cython
cimport dissect.tuples as _tuples   # make() and view() in C

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


# Both directions of a connection: the halves are read as C structs (h.next, h.held... are
# C field reads, not attribute lookups) in the per-segment methods.
cdef class StreamReassembler:
    cdef public tuple halves

    @cython.locals(h=_Half, other=_Half)
    cpdef list push(self, long long direction, object seg)
    @cython.locals(h=_Half)
    cpdef list close(self, object frame=*, object ts=*)
    cdef _insert(self, _Half h, long long d, object s, object data, object frame, object ts,
                 list out)
    cdef _check_overlap(self, _Half h, long long d, object s, object data, object frame,
                        object ts, list out)
    cdef _deliver(self, _Half h, long long d, list out)
    cdef _append_tail(self, _Half h, object data)
    cdef _gap_until(self, _Half h, long long d, object upto, object frame, object ts,
                    list out)
