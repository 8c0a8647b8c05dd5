# C layout of FileArray for the compiled build (scripts/build_speedups.py; Cython's
# augmenting declarations, see dissect/analysis/tcp.pxd): its fields are C fields, and
# len(), [] and []= are C slots, so a FileArray in memory costs its callers about what the
# array inside it does. filearray.py stays the reference.

cdef class FileArray:
    cdef public object typecode, _a, _mm, _view
    cdef public Py_ssize_t _fd, _n, _limit
    cdef object __weakref__
