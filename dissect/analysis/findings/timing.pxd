# C layout of _ConnTable for the compiled build (scripts/build_speedups.py; Cython's
# augmenting declarations, see dissect/analysis/tcp.pxd): its columns are C fields, read
# and appended to once per connection without an attribute lookup. timing.py stays the
# reference; the rest of the module stays Python classes.

cdef class _ConnTable:
    cdef public dict others, odd, fentry, _codes
    cdef public list _names
    cdef public object ids, codes, nums, count, fkey, flags

    cpdef Py_ssize_t row(self, object cid) except? -9
