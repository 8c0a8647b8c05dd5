# C types for dissect/parallel.py's frame sharing when compiled (scripts/build_speedups.py;
# Cython's augmenting declarations, see dissect/analysis/tcp.pxd): every worker hashes the
# header of every frame of the capture to find its own, so the hash runs in C. The hash is
# taken modulo 2**32 after 64-bit products; unsigned 64-bit arithmetic wraps modulo 2**64,
# which leaves the low 32 bits exactly as Python's unbounded integers give them.

import cython
cimport dissect.tuples as _tuples   # make(): NamedTuples built in C

cpdef unsigned long long _mix(unsigned long long a, unsigned long long p)

@cython.locals(etype=cython.longlong, vihl=cython.longlong, frag=cython.longlong,
               proto=cython.longlong, src=cython.ulonglong, dst=cython.ulonglong,
               sp=cython.ulonglong, dp=cython.ulonglong)
cpdef object _fast_hash(object data, Py_ssize_t off, Py_ssize_t caplen, long long linktype)
