# C layout of KeyTable for the compiled build (scripts/build_speedups.py; Cython's
# augmenting declarations, see dissect/analysis/tcp.pxd): its four arrays are typed views
# read and written in C, and a key's slot is found with 64-bit C arithmetic (the
# multiplications wrap as the Python code's masks make them). compact.py stays the
# reference; the other classes there stay Python classes.

import cython

cdef unsigned long long _K64, _M1, _M2, _EMPTY, _GONE


cdef class KeyTable:
    cdef unsigned long long[:] _kh, _kl, _a, _b
    cdef public Py_ssize_t _mask, _used, _filled
    cdef public dict _other
    cdef public object _map
    cdef object __weakref__

    @cython.locals(kh=cython.ulonglong, kl=cython.ulonglong, h=cython.ulonglong,
                   i=cython.Py_ssize_t, free=cython.Py_ssize_t, s=cython.ulonglong,
                   mask=cython.Py_ssize_t)
    cpdef Py_ssize_t _slot(self, object key) except? -9
