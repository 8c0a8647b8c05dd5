# C layout of the transport glue for the compiled build (scripts/build_speedups.py; Cython's
# augmenting declarations, see dissect/analysis/tcp.pxd): the analyzer's parts are C fields,
# read for every segment without an instance-dictionary lookup. transport.py stays the
# reference.

import cython
cimport dissect.tuples as _tuples   # view(): NamedTuple items read in C


cdef class TransportAnalyzer:
    cdef public bint tag, store
    cdef public object record_keys
    cdef public Py_ssize_t _seen
    cdef public dict _rfirst, _tfirst, _ufirst, _fins, _metas
    cdef public set _closed
    cdef public object tcp, udp, app, reasm, conn_first
    cdef public object _cold, _turns
    cdef public list _cold_codes
    cdef public dict _cold_index

    # per segment of a split run: a C call
    @cython.locals(n=cython.Py_ssize_t)
    cpdef _tag(self, long long phase, object x)
