# C types for dissect/analysis/tcp.py when scripts/build_speedups.py compiles it (Cython's
# "augmenting .pxd"): the Python source stays the reference and runs unchanged without a
# build; compiled, the per-direction state becomes C fields and the hot locals C integers.
# Sequence numbers, frame numbers and byte offsets all fit a signed 64-bit integer, and the
# 32-bit sequence arithmetic masks with & 0xFFFFFFFF exactly as Python ints do. Values that
# can be None stay objects.

import cython
cimport dissect.tuples as _tuples   # make(): NamedTuples built in C
cimport dissect.numeric as _numeric   # snap_ns(): nanoseconds in C arithmetic

# module constants as C integers (tcp.py re-exports them as Python names at its end)
cdef long long FIN, SYN, RST, PSH, ACK, _SFR, M32, HALF
cdef long long A_RETRANSMISSION, A_LOST_PACKET, A_ACK_LOST_PACKET, A_KEEP_ALIVE
cdef long long A_DUPLICATE_ACK, A_ZERO_WINDOW, A_ZERO_WINDOW_PROBE, A_ZERO_WINDOW_PROBE_ACK
cdef long long A_KEEP_ALIVE_ACK, A_OUT_OF_ORDER, A_FAST_RETRANSMISSION, A_WINDOW_UPDATE
cdef long long A_WINDOW_FULL, A_REUSED_PORTS, A_SPURIOUS_RETRANSMISSION
cdef long long TCP_MAX_UNACKED_SEGMENTS, BIF_SANE_LIMIT, _WS_RETRANS, _US_SNAP_NS
cdef long long _INACTIVE, _SYN_SENT, _SYN_ACK_SENT, _PARTIAL, _ESTABLISHED, _CLOSED, _RESET

# called per segment: C calls (their bodies, and so Python's round(), unchanged)
cpdef object _ns(double seconds)
cpdef object _disagreement(long long ta, tuple bm)
cpdef bint seq_gt(long long a, long long b)
cpdef bint seq_le(long long a, long long b)


@cython.final
cdef class _Dir:
    cdef public long long base_seq, win_scale, window, lastsegflags, nextseq, nextseqframe
    cdef public double nextseqtime, lastacktime
    cdef public long long maxseqtobeacked, lastack, lastnondupack, dupacknum
    cdef public bint base_set, is_first_ack, valid_bif, sack_perm, timestamps, bm_isn_set
    cdef public list segs, bm_iv, bm_sacked
    cdef public tuple sack
    cdef public object ep, mss, wscale_opt, fin_frame, rst_frame, syn_frame
    cdef public long long packets, bytes, retrans, zwin, bm_lastraw, bm_lastabs, bm_dupacks
    cdef public object bm_base, bm_high, bm_acked, ctl_seen, bm_lpayload
    cdef public long long bm_lseq, bm_lack, bm_lwin, bm_lflags, bm_lplen, bm_lnpk
    cdef public double bm_lts
    cdef public dict hist_counts

    @cython.locals(d=cython.longlong, a=cython.longlong)
    cpdef long long unwrap(self, long long raw)
    @cython.locals(d=cython.longlong)
    cpdef long long rel(self, long long raw)


@cython.final
cdef class Connection:
    cdef public object id, client, server, key, irtt, ts_mru_syn, hs_syn, hs_synack, hs_ack
    cdef public _Dir cdir, sdir, d_a, d_b
    cdef public bint flipped, reused
    cdef public list history
    cdef public long long first_frame, last_frame, ostate, rstate, npackets
    cdef public double start_ts, last_ts
    cdef public object frames

    @cython.locals(c=cython.longlong, x=cython.longlong, counts=dict)
    cpdef _hist(self, _Dir d, str letter)


@cython.locals(i=cython.Py_ssize_t, j=cython.Py_ssize_t, lo=cython.longlong,
               hi=cython.longlong, ls=cython.longlong, le=cython.longlong, last=list)
cpdef _iv_add(list iv, long long a, long long b)
@cython.locals(i=cython.Py_ssize_t, n=cython.longlong, s=cython.longlong, e=cython.longlong,
               lo=cython.longlong, hi=cython.longlong, ls=cython.longlong,
               le=cython.longlong)
cpdef long long _iv_covered(list iv, long long a, long long b)


@cython.final
cdef class TcpAnalyzer:
    cdef public dict _conns, _quiet
    cdef public object _dormant, _slots, _bpos
    cdef public list connections, _retired
    cdef public object on_sleep, on_wake
    cdef public object _spill, _frozen
    cdef public bint keep_frames, _reuse_hit
    cdef public double _tmax, _dormant_after
    cdef public long long _nfed, _sweep_mask, revived

    @cython.locals(seq=cython.longlong, ack=cython.longlong, flags=cython.longlong,
                   frame=cython.longlong, ts=cython.double, ta=cython.longlong,
                   syn_ack=cython.longlong, seglen=cython.longlong, win=cython.longlong,
                   fin_syn=cython.longlong, nextseq_f=cython.longlong,
                   nextseq=cython.longlong, m=cython.longlong, sh=cython.longlong,
                   no_sfr=cython.bint, same=cython.bint, seq_not_advanced=cython.bint,
                   dry_bif=cython.bint, i=cython.Py_ssize_t, base=cython.longlong,
                   first=cython.longlong, last=cython.longlong, x=cython.longlong,
                   inf=cython.longlong, lo=cython.longlong, hi=cython.longlong,
                   fwd=_Dir, rev=_Dir, conn=Connection)
    cpdef feed(self, seg)
    cpdef Connection _new_conn(self, key, seg)
    cpdef _sweep(self)
    cpdef _wake(self, key, a, long long seq, long long flags)
    cpdef _live(self, Py_ssize_t i, dict thawed=*)
    @cython.locals(flags=cython.longlong, plen=cython.longlong, frame=cython.longlong,
                   is_orig=cython.bint, st=cython.longlong, pst=cython.longlong,
                   seq=cython.longlong, s=cython.longlong, e=cython.longlong,
                   npk=cython.longlong, a_=cython.longlong, lo=cython.longlong,
                   dup=cython.bint, ack=cython.longlong, win=cython.longlong,
                   ts=cython.double)
    cpdef _records(self, Connection conn, _Dir fwd, _Dir rev, seg, long long ta)
