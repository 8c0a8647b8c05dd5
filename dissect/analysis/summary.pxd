# C layout of CaptureSummary for the compiled build (scripts/build_speedups.py; Cython's
# augmenting declarations, see dissect/analysis/tcp.pxd): counters as C integers, updated
# for every frame without a dictionary lookup. summary.py stays the reference.

cimport dissect.tuples as _tuples   # view(): NamedTuple items read in C

cdef class CaptureSummary:
    cdef public long long frames, bytes_captured, bytes_wire, truncated_frames
    cdef public long long conversations_dropped, _nadd, _fold_mask
    cdef public object first_ts, last_ts
    cdef public dict _cells, anomalies, flag_counts, _conn_cells, apps, _app_cells
    cdef public object fold_hook, _parked
    cdef public object _lchain, _lsrc, _ldst, _lcell, _cchain, _cconn, _ccell
