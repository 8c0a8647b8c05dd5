# C types for dissect/columns/scan.py when scripts/build_speedups.py compiles it (Cython's
# augmenting declarations, see dissect/analysis/tcp.pxd): the mapped file is read through
# a typed read-only byte view, record and header fields are C integers, and the hash of a
# frame of another shard is computed and rejected without a Python object. Indexing stays
# bounds-checked (a hostile length raises, as in Python, instead of reading past the map).

import cython
cimport dissect.tuples as _tuples   # make(): NamedTuples built in C
cimport dissect.buffers as _buffers   # span(): payload bytes copied from the view

# IPv4 address (as an integer) -> its text: looked up twice per frame, as a C dict
cdef dict _addr4_int
# the last two addresses looked up (scan.py's _addr4)
cdef unsigned long long _NO_ADDR, _a4v0, _a4v1
cdef object _a4s0, _a4s1
cdef object _addr4(unsigned long long v)

@cython.locals(a=cython.ulonglong, b=cython.ulonglong)
cdef inline unsigned long long _be16(const unsigned char[:] mv, Py_ssize_t o)
@cython.locals(a=cython.ulonglong, b=cython.ulonglong, c=cython.ulonglong,
               d=cython.ulonglong)
cdef inline unsigned long long _u32(const unsigned char[:] mv, Py_ssize_t o, bint little)

@cython.locals(mv="const unsigned char[:]", off=cython.Py_ssize_t, number=cython.longlong,
               nwarn=cython.Py_ssize_t, eth=cython.bint, sec=cython.ulonglong,
               frac=cython.ulonglong, caplen=cython.Py_ssize_t, wirelen=cython.Py_ssize_t,
               start=cython.Py_ssize_t, end=cython.Py_ssize_t, fast=cython.bint,
               total=cython.Py_ssize_t, proto=cython.Py_ssize_t, h=cython.ulonglong,
               ts=cython.double, more=cython.bint, maxcap=cython.Py_ssize_t,
               chunk=cython.Py_ssize_t, b0=cython.ulonglong, b1=cython.ulonglong,
               b2=cython.ulonglong, b3=cython.ulonglong, a=cython.ulonglong,
               p=cython.ulonglong, rec=cython.Py_ssize_t)
cpdef bint _scan(list out, object buf, Py_ssize_t size, bint little, double res,
                 Py_ssize_t snaplen, long long lt, unsigned long long shard,
                 unsigned long long nshards, object other_shard, list warnings, object fidx,
                 object counter, list pos, bint keep_data)

@cython.locals(offb=cython.Py_ssize_t, thl=cython.Py_ssize_t, o=cython.Py_ssize_t,
               poff=cython.Py_ssize_t, plen=cython.Py_ssize_t, pend=cython.Py_ssize_t,
               ulen=cython.Py_ssize_t, b0=cython.ulonglong, b1=cython.ulonglong,
               b2=cython.ulonglong, b3=cython.ulonglong, v=cython.ulonglong,
               seq=cython.ulonglong, ack=cython.ulonglong, sport=cython.Py_ssize_t,
               dport=cython.Py_ssize_t, flags=cython.Py_ssize_t, win=cython.Py_ssize_t)
cdef _decode_ip4(const unsigned char[:] mv, object buf, Py_ssize_t start, Py_ssize_t n,
                 Py_ssize_t total, Py_ssize_t proto, long long number, double ts)
cdef str _ip4_text(unsigned long long v)
