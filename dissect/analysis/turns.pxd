# C layout of the turn table for the compiled build (scripts/build_speedups.py; Cython's
# augmenting declarations, see dissect/analysis/tcp.pxd): data() runs for every data
# segment of a connection whose protocol is not known, with C fields and C calls.
# turns.py stays the reference.

import cython


@cython.final
cdef class TurnTable:
    cdef public object conn, _count, _last, _lastf
    cdef public list cols
    cdef public dict _open
    cdef public bint ordered

    cpdef data(self, object conn, long long direction, object plen, object frame, object ts)
    # (C calls within the module: a new turn, a write-back, a connection's revival)
    cdef _begin(self, object conn, object cur, object plen, object frame, object ts)
    cdef _put(self, list cur)
    cdef _keep(self, object conn, object n, object last)
    cdef _revive(self, object conn)
