# The inline C version of dissect/tuples.py for the compiled build (scripts/build_speedups.py):
# a module whose .pxd has "cimport dissect.tuples as _tuples" calls this instead of
# tuple.__new__. Same result: an instance of the tuple subclass cls holding the items of
# values (a new reference to each).

from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_SET_ITEM


cdef extern from "Python.h":
    # cls->tp_alloc of a tuple subclass without slots of its own (a NamedTuple): a zeroed
    # instance of n items, tracked by the cycle collector as tuple.__new__ leaves it
    object PyType_GenericAlloc(type cls, Py_ssize_t n)


cdef inline object make(type cls, tuple values):
    cdef Py_ssize_t i, n = PyTuple_GET_SIZE(values)
    cdef object r = PyType_GenericAlloc(cls, n)
    cdef object v
    for i in range(n):
        v = <object>PyTuple_GET_ITEM(values, i)
        Py_INCREF(v)
        PyTuple_SET_ITEM(r, i, v)
    return r


# t (a tuple or a tuple subclass: the per-packet NamedTuples) typed as a tuple, so that its
# items are read with PyTuple_GET_ITEM; anything else is a TypeError, as in Python.
cdef inline tuple view(object t):
    if not isinstance(t, tuple):
        raise TypeError(f"not a tuple: {type(t).__name__}")
    return <tuple>t
