# C layout of the turn table for the compiled build (scripts/build_speedups.py; Cython's
# augmenting declarations, see dissect/analysis/tcp.pxd): data() runs for every data
# segment of a connection whose protocol is not known, with C fields and a C call.
# turns.py stays the reference.

import cython


@cython.final
cdef class TurnTable:
    cdef public object conn, _count, _last, _lastf
    cdef public list cols
    cdef public dict _open
    cdef public bint ordered

    cpdef data(self, object conn, long long direction, object plen, object frame, object ts)
