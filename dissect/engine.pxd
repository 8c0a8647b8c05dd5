# C layout of the per-frame Verdict for the compiled build (scripts/build_speedups.py;
# Cython's augmenting declarations, see dissect/analysis/tcp.pxd). engine.py stays the
# reference.

cimport dissect.tuples as _tuples   # view(): NamedTuple items read in C

cdef class Verdict:
    cdef public object conn, flags, _values, direction, _pv
