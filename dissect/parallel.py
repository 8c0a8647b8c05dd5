"""Analysis spread over processes, with the same results as one pass.

Captures (one file, or several taken as one capture: frames of the second file follow
those of the first, numbered on, so connections that span rotated files are one
connection) are split **by connection**: a frame goes to shard
``hash(unordered address/port pair) % N``. Each worker reads the files itself, skips the
frames of other shards after a look at a few header bytes, and runs the ordinary per-frame
analysis (:func:`dissect.engine.analyse_frames`) on whole connections. The parent merges:

* connection ids are renumbered in order of first frame (exactly tshark's ``tcp.stream``
  numbering, since a connection is numbered when its first frame is seen; UDP flows the
  same way);
* application records are ordered by the merge keys the workers' transport analyzers give
  them (the frame being analysed when a record was emitted, then the end-of-capture steps
  in the order one pass runs them), then the capture-level post-processing runs once;
* the capture summary is merged cell by cell in order of first frame.

Without packet lines to merge, the parent analyses shard 0 itself and forks workers for
the others; each worker writes its result to a temporary file in chunks and exits, and the
parent reads the files only once every worker is gone (no process holds a result, its
pickled bytes and a copy at once). Packet lines (``--format jsonl``) are made by the workers
(every shard in a worker then) and merged by frame number as they stream in, so memory
stays bounded. The same worker function serves
:mod:`dissect.distributed` (dask), where each task reads the files from shared storage.

What does not split: frames of other protocols are shared out by frame number (they only
count in the summary); an FTP data connection is tied to its control connection by
the application dispatcher while streaming, so captures with FTP control traffic (port 21)
are not split (one worker takes the whole of them).
"""

from __future__ import annotations

import heapq
import os
import socket
import struct
import time
from array import array
from dataclasses import dataclass, field

import dissect.tuples as _tuples
from dissect.analysis.tcp import unwrap_plain, unwrap_records, wrap_records
from dissect.analysis.transport import udp_id
from dissect.columns.filearray import FileArray
from dissect.columns.scan import USE_SCAN, pcap_pairs
from dissect.engine import (
    Engine,
    Result,
    RetransColumns,
    SynColumns,
    analyse_frames,
    finish_summary,
    fold_summary,
    gc_paused,
    new_transport,
    repeated_retrans,
    repeated_syns,
    unsupported_error,
)
from dissect.engine import optional as _optional
from dissect.errors import CaptureError
from dissect.io.capture import MAX_CAPLEN, CaptureReader, Frame
from dissect.store import FileBlobs, RecordStore

# Packet lines a worker sends in one message (bigger: fewer messages, more memory).
LINE_CHUNK = 4096
# Messages that may wait in one worker's queue before it blocks (bounds the parent's
# memory when it writes slower than the workers analyse).
QUEUE_DEPTH = 16
# Ports whose traffic ties connections together in the application dispatcher (FTP control
# announces data connections): a capture with them is not split by connection.
UNSPLITTABLE_PORTS = (21,)

_hdr4 = struct.Struct("!12xHB5xHxB2xII").unpack_from    # etype, vihl, frag, proto, src, dst
_ports = struct.Struct("!HH").unpack_from


def _mix(a: int, p: int) -> int:
    h = ((a * 0x9E3779B1) ^ (p * 0x85EBCA6B)) & 0xFFFFFFFF
    return h ^ (h >> 16)


_fold_cache: dict[str, int] = {}


def _fold(ip: str) -> int:
    """32-bit fold of an address (IPv4: the address itself; IPv6: XOR of its words)."""
    v = _fold_cache.get(ip)
    if v is None:
        try:
            b = socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
        except OSError:
            b = ip.encode()[:16].ljust(4, b"\0")
        v = 0
        for i in range(0, len(b) - len(b) % 4, 4):
            v ^= int.from_bytes(b[i:i + 4], "big")
        if len(_fold_cache) < 65536:
            _fold_cache[ip] = v
    return v


def shard_of_transport(t, nshards: int) -> int:
    """Shard of a decoded TCP segment / UDP datagram: the same for both directions."""
    return _mix(_fold(t.src) ^ _fold(t.dst), t.sport ^ t.dport) % nshards


def _fast_hash(data, off: int, caplen: int, linktype: int):
    """Hash of the unordered address/port pair straight from the bytes for Ethernet/IPv4
    without options, not a fragment, TCP or UDP; None for anything else."""
    if linktype != 1 or caplen < 38:
        return None
    etype, vihl, frag, proto, src, dst = _hdr4(data, off)
    if etype != 0x0800 or vihl != 0x45 or frag & 0x3FFF or (proto != 6 and proto != 17):
        return None
    sp, dp = _ports(data, off + 34)
    return _mix(src ^ dst, sp ^ dp)


@dataclass
class ShardResult:
    shard: int
    result: Result
    record_keys: list = field(default_factory=list)
    warnings: list = field(default_factory=list)   # (file index, frame, name)
    errors: list = field(default_factory=list)     # (file index, CaptureError)
    infos: list = field(default_factory=list)
    frames_per_file: list = field(default_factory=list)
    # (n, [(position, timing record)]): this shard's candidates for the n slowest
    # transactions (dissect.analysis.findings.timing.slowest_candidates), when asked for
    slowest: tuple | None = None
    # with records in stores (store=True): the first frame of each connection in its
    # store's order, and how many of them are TCP (the UDP flows after them are
    # udp/0, udp/1, ... in that order)
    conn_first: tuple = (None, 0)


def _pcap_frames(reader, base, shard, nshards, warnings, fidx, counter, state):
    """Own frames of an uncompressed pcap, walking the records directly. ``state`` gets
    [frames in the file, damaged?]."""
    src = reader._win.src
    buf, size = src.buf, src.size
    info = reader.info
    order, res = info.byte_order, info.resolution
    snaplen = info.snaplen
    lt = info.interfaces[0]["linktype"]
    rec = struct.Struct(order + "IIII").unpack_from
    off = 24
    number = base
    nwarn = 0
    fast = _fast_hash
    while off + 16 <= size:
        sec, frac, caplen, wirelen = rec(buf, off)
        start = off + 16
        end = start + caplen
        if caplen > MAX_CAPLEN or end > size:
            break
        number += 1
        if counter is not None and not number & 0x3FFF:
            counter(end, number)
        h = fast(buf, start, caplen, lt)
        if h is None:
            data = buf[start:end]
            fr = _tuples.make(Frame, (number, sec + frac * res, caplen, wirelen, lt, 0, data))
            t = _decode(fr).transport
            s = shard_of_transport(t, nshards) if t is not None else number % nshards
            if s != shard:
                off = end
                continue
        elif h % nshards != shard:
            off = end
            continue
        else:
            fr = _tuples.make(Frame, (number, sec + frac * res, caplen, wirelen, lt, 0,
                                      buf[start:end]))
        if nwarn < 1000:
            if caplen > snaplen and snaplen:
                warnings.append((fidx, number, "caplen-exceeds-snaplen"))
                nwarn += 1
            if caplen > wirelen and nwarn < 1000:
                warnings.append((fidx, number, "caplen-exceeds-wire-length"))
                nwarn += 1
            if frac * res >= 1.0 and nwarn < 1000:
                warnings.append((fidx, number, "timestamp-fraction-out-of-range"))
                nwarn += 1
        yield fr
        off = end
    state[0] = number - base
    state[1] = off < size
    if counter is not None:
        counter(size, number)


def _reader_frames(reader, base, shard, nshards, state):
    """Own frames of any capture, through the reader (pcapng, gzip, damaged pcap)."""
    for fr in reader:
        state[0] = fr.number
        h = _fast_hash(fr.data, 0, fr.caplen, fr.linktype)
        number = base + fr.number
        if h is None:
            t = _decode(fr).transport
            s = shard_of_transport(t, nshards) if t is not None else number % nshards
        else:
            s = h % nshards
        if s == shard:
            yield fr._replace(number=number)


def _other_shard(nshards: int):
    """Shard of a frame the scanner's fast hash could not place, from its decode."""
    def other(number, d):
        t = d.transport
        return shard_of_transport(t, nshards) if t is not None else number % nshards
    return other


def _fsize(p) -> int:
    try:
        return os.path.getsize(p)
    except OSError:
        return 0


def _decode(fr):
    from dissect.columns.decode import decode_frame
    return decode_frame(fr)


def analyse_shard(paths: list[str], shard: int, nshards: int, tcp: bool = True,
                  app: bool = True, lines=None, counter=None,
                  slowest: int = 0, store: bool = False) -> ShardResult:
    """Analyse shard ``shard`` of ``nshards`` of the capture made of ``paths``.

    ``lines(frame, conn, prefix, suffix)``: when given, called per own frame with the JSONL
    packet line cut where the connection id goes (conn is worker-local, None when the frame
    has no connection; then prefix is the whole line). ``slowest``: also find this shard's
    candidates for the ``slowest`` slowest transactions (the report's table), so that the
    merge does not time every transaction again in one process. ``store``: the records
    wait on disk (dissect.store) and the merge streams them (a streamed Result)."""
    with gc_paused():
        out = _analyse_shard(paths, shard, nshards, tcp, app, lines, counter, store)
        if slowest and app and tcp:
            cands = _optional("dissect.analysis.findings.timing", "slowest_candidates")
            if cands is not None:
                out.slowest = (slowest, cands(out.result, slowest))
        return out


def _analyse_shard(paths, shard, nshards, tcp, app, lines, counter,
                   store=False) -> ShardResult:
    res = Result(paths[0])
    res.syns = SynColumns()
    res.retrans = RetransColumns()
    transport = new_transport(tcp, app, tag=True, store=store)
    out = ShardResult(shard, res)
    on_frame = None
    if lines is not None:
        from dissect.report.jsonl import packet_line

        def on_frame(fr, d, v):
            c = v.conn
            line = packet_line(fr, d, v.flags, None, v.values)
            if c is None:
                lines(fr.number, None, line, "")
            else:
                p, s = line.split(',"conn":null', 1)
                lines(fr.number, c, p, s)
    base = 0
    fbase = 0
    for fidx, path in enumerate(paths):
        try:
            reader = CaptureReader(path)
        except CaptureError as e:
            fbase += _fsize(path)
            out.errors.append((fidx, e))
            out.infos.append(None)
            out.frames_per_file.append(0)
            continue
        out.infos.append(reader.info)
        state = [0, False]
        fcounter = None
        if counter is not None:
            def fcounter(off, number, _fb=fbase):
                counter(_fb + off, number)
        fbase += _fsize(path)
        try:
            info = reader.info
            if info.format == "pcap" and not info.compressed:
                if USE_SCAN:
                    src = reader._win.src
                    gen = pcap_pairs(src.buf, src.size, info.byte_order == "<",
                                     info.resolution, info.snaplen,
                                     info.interfaces[0]["linktype"], base, shard, nshards,
                                     _other_shard(nshards), out.warnings, fidx, fcounter,
                                     state, False)   # packet lines read no frame bytes
                    analyse_frames(gen, res, transport, on_frame, decoded=True)
                else:
                    gen = _pcap_frames(reader, base, shard, nshards, out.warnings, fidx,
                                       fcounter, state)
                    analyse_frames(gen, res, transport, on_frame)
                if state[1]:
                    # damage: the reader names it exactly as a one-pass run would
                    reader.close()
                    reader = CaptureReader(path)
                    try:
                        for _ in reader:
                            pass
                    except CaptureError as e:
                        out.errors.append((fidx, e))
                    state[0] = reader.frames_read
            else:
                try:
                    analyse_frames(_reader_frames(reader, base, shard, nshards, state),
                                   res, transport, on_frame)
                except CaptureError as e:
                    out.errors.append((fidx, e))
                state[0] = reader.frames_read
                if fcounter is not None:
                    fcounter(_fsize(path), base + state[0])
                if shard == 0:
                    out.warnings.extend((fidx, base + f, n) for f, n in reader.warnings)
        finally:
            reader.close()
        out.frames_per_file.append(state[0])
        base += state[0]
    res.syns = repeated_syns(res.syns)
    res.retrans = repeated_retrans(res.retrans)
    if transport is not None:
        res.connections, res.records = transport.finish()
        out.record_keys = transport.record_keys
        if isinstance(res.connections, RecordStore):
            out.conn_first = transport.conn_first
            fold_summary(res.summary, transport)
    return out


# --------------------------------------------------------------------------- merging

def merge(paths: list[str], parts: list[ShardResult], app: bool = True) -> Result:
    """One Result from the shard results of the same capture, as one pass gives it. The
    parts' records are renumbered in place and become the result's (copying them held
    both copies of every record at once: ~90 MB on the 1M-frame benchmark)."""
    parts = sorted(parts, key=lambda p: p.shard)
    if parts and all(isinstance(p.result.connections, RecordStore) for p in parts):
        return _merge_streamed(paths, parts)
    res = Result(paths[0] if len(paths) == 1 else ", ".join(paths))
    first = parts[0]
    res.info = next((i for i in first.infos if i is not None), None)
    # connection ids: in order of first frame, TCP and UDP each
    tcp, udp = [], []
    for i, p in enumerate(parts):
        for c in p.result.connections:
            (tcp if c.get("proto") == "tcp" else udp).append((c["first_frame"], i, c))
    tcp.sort(key=lambda x: (x[0], x[1]))
    udp.sort(key=lambda x: (x[0], x[1]))
    maps: list[dict] = [{} for _ in parts]
    conns = []
    for n, (_f, i, c) in enumerate(tcp):
        maps[i][c["id"]] = n
        c["id"] = n
        conns.append(c)
    for n, (_f, i, c) in enumerate(udp):
        gid = f"udp/{n}"
        maps[i][c["id"]] = gid
        c["id"] = gid
        conns.append(c)
    # application records in the order one pass emits them
    keyed = []
    done: set = set()    # a record object listed twice is renumbered once
    for i, p in enumerate(parts):
        m = maps[i]
        for j, (k, r) in enumerate(zip(p.record_keys, p.result.records)):
            c = r.get("conn")
            if c is not None and c in m and id(r) not in done:
                r["conn"] = m[c]
                done.add(id(r))
            keyed.append((k, i, j, r))
    keyed.sort(key=lambda x: x[:3])
    records = [x[3] for x in keyed]
    linked = any(r.get("type") == "ftp-expect" for r in records)
    if app and any(p.result.connections or p.result.records for p in parts):
        from dissect.analysis.post import postprocess
        records = postprocess(conns, records)
    if not linked and parts and all(p.slowest is not None for p in parts):
        # post-processing (FTP data linking) changed nothing the workers timed
        res.slowest_timings = _merge_slowest(parts, maps, conns)
    res.connections, res.records = conns, records
    _merge_rest(res, parts, maps)
    if app or conns:
        finish_summary(res)
    return res


def _merge_rest(res: Result, parts: list[ShardResult], maps: list) -> None:
    """The summary, what the files warned about, the SYN and retransmission lists and the
    first error, merged."""
    res.summary.merge([p.result.summary for p in parts], maps)
    warns = sorted((w for p in parts for w in p.warnings), key=lambda w: (w[0], w[1]))
    per_file: dict = {}
    for fidx, frame, name in warns:
        k = per_file[fidx] = per_file.get(fidx, 0) + 1
        if k <= 1000:
            res.summary.anomaly(name, frame)
    # in frame order, into columns again: each part's rows are (merged as sorting them
    # all would, ties in part order)
    res.syns = SynColumns.of(_merged([p.result.syns for p in parts], 0))
    res.retrans = RetransColumns.of(_merged([p.result.retrans for p in parts], 3, maps))
    errors = parts[0].errors if parts else []
    if errors:
        res.error = sorted(errors, key=lambda e: e[0])[0][1]
    unsupported_error(res, res.path)


def _merged(parts: list, k: int, maps=None):
    """The rows of ``parts`` (each a list or columns of tuples) in the order of their item
    ``k`` (a frame number; ties in part order), each part's connection id (item 0) mapped
    by ``maps[i]`` when given. A part is in that order already (rows are made frame by
    frame), so they are merged as they are read; sorted, should one not be."""
    def rows(i):
        if maps is None:
            yield from parts[i]
        else:
            m = maps[i]
            for r in parts[i]:
                yield (m.get(r[0], r[0]),) + r[1:]
    for part in parts:
        prev = None
        for r in part:
            x = r[k]
            if prev is not None and x < prev:
                return sorted((r for i in range(len(parts)) for r in rows(i)),
                              key=lambda r: r[k])
            prev = x
    return heapq.merge(*(rows(i) for i in range(len(parts))), key=lambda r: r[k])


# --------------------------------------------------------------------------- streamed merge

class ConnMap:
    """Local -> global connection ids of one shard: TCP ids in an array (they are 0..n-1),
    UDP flow ids in a dict. Reads like the dict the list merge uses."""

    def __init__(self):
        self.tcp = array("q")
        self.udp: dict = {}

    def get(self, k, default=None):
        if type(k) is int:
            return self.tcp[k] if 0 <= k < len(self.tcp) else default
        return self.udp.get(k, default)

    def __getitem__(self, k):
        v = self.get(k, self)
        if v is self:
            raise KeyError(k)
        return v

    def __contains__(self, k) -> bool:
        return self.get(k, self) is not self


def _conn_order(parts: list[ShardResult]) -> tuple[list, tuple]:
    """The global ids (ConnMap per part) and, in global order, (part, position in its
    store) of every connection, as two columns: TCP in order of first frame, then UDP the
    same way, as the list merge numbers them. The parts' connections are merged, not
    sorted as one list: each part's are in order of first frame already (else they are
    sorted by it), so no object is made per connection (the columns go to file mappings
    once large: dissect.columns.filearray)."""
    maps = [ConnMap() for _ in parts]
    part, place = FileArray("i"), FileArray("q")
    for udp in (False, True):
        streams = []
        for i, p in enumerate(parts):
            ff, ntcp = p.conn_first
            if not udp:
                maps[i].tcp = FileArray("q")
                maps[i].tcp.resize_zero(ntcp)
            rng = range(ntcp, len(ff)) if udp else range(ntcp)
            if not all(ff[j - 1] <= ff[j] for j in rng[1:]):
                rng = sorted(rng, key=ff.__getitem__)   # stable: ties by position
            streams.append(_firsts(ff, i, rng))
        # (first frame, part, position): ties broken by part, then position, as sorting
        # the tuples of all parts did
        for n, (_f, i, pos) in enumerate(heapq.merge(*streams)):
            if udp:
                maps[i].udp[udp_id(pos - parts[i].conn_first[1])] = udp_id(n)
            else:
                maps[i].tcp[pos] = n
            part.append(i)
            place.append(pos)
    return maps, (part, place)


def _firsts(ff, i: int, positions):
    for pos in positions:
        yield (ff[pos], i, pos)


def _once(stream) -> None:
    """A merged stream renumbers the records it reads in place: it is read once."""
    if stream.read:
        raise RuntimeError("a streamed Result's records can be read once only")
    stream.read = True


class _MergedConns:
    """The parts' connection records in global order with global ids (one pass; each
    part's store is read in order, batch by batch)."""

    def __init__(self, parts, maps, order):
        self.parts, self.maps, self.order = parts, maps, order
        self.read = False

    def __len__(self) -> int:
        return len(self.order[0])

    def __iter__(self):
        _once(self)
        its = [iter(p.result.connections) for p in self.parts]
        pos = [0] * len(self.parts)
        for i, want in zip(*self.order):
            # a part's store is in id order, which is its order of first frames for TCP
            # and of UDP flows: ``want`` is its next record unless ids were out of order
            if pos[i] == want:
                c = next(its[i])
                pos[i] += 1
            else:
                c = self.parts[i].result.connections.get(want)
            cid = c["id"]
            c["id"] = self.maps[i].tcp[cid] if type(cid) is int else self.maps[i].udp[cid]
            yield c


class _MergedRecords:
    """The parts' application records in the order one pass emits them (by merge key,
    then part, then position), their connection ids global: one pass, each part read in
    order but for its records whose keys are out of order (those made at the end of the
    capture), which are read by position."""

    def __init__(self, parts, maps):
        self.parts, self.maps = parts, maps
        self.read = False

    def __len__(self) -> int:
        return sum(len(p.result.records) for p in self.parts)

    def _streams(self, i: int) -> list:
        """Part ``i``'s records as ((phase, a, b, i, position), record), in key order: the
        longest prefix whose keys do not go down, read in order, and the rest, read by
        position in key order."""
        p = self.parts[i]
        keys, st = p.record_keys, p.result.records
        n = len(st)
        ph, ka, kb = keys.phase, keys.a, keys.b
        k = 1
        while k < n and (ph[k - 1], ka[k - 1], kb[k - 1]) <= (ph[k], ka[k], kb[k]):
            k += 1
        rest = sorted(range(k, n), key=lambda j: (ph[j], ka[j], kb[j], j)) if k < n else []

        def prefix():
            it = iter(st)
            for j in range(min(k, n)):
                yield (ph[j], ka[j], kb[j], i, j), next(it)

        def suffix():
            for j in rest:
                yield (ph[j], ka[j], kb[j], i, j), st.get(j)
        return [prefix(), suffix()]

    def __iter__(self):
        _once(self)
        streams: list = []
        for i in range(len(self.parts)):
            streams += self._streams(i)
        tcps = [m.tcp for m in self.maps]
        udps = [m.udp for m in self.maps]
        # keys are unique (part, position): the merge never compares two records
        for key, r in heapq.merge(*streams):
            c = r.get("conn")
            if c is not None:
                if type(c) is int:
                    tcp = tcps[key[3]]
                    if 0 <= c < len(tcp):
                        r["conn"] = tcp[c]
                else:
                    g = udps[key[3]].get(c)
                    if g is not None:
                        r["conn"] = g
            yield r


def _merge_streamed(paths: list[str], parts: list[ShardResult]) -> Result:
    """merge() of parts whose records wait on disk (analyse_shard(store=True)): the
    Result's connections and records are one-pass streams read by finish_stream (the
    parent never holds every record), the rest as merge() makes it."""
    res = Result(paths[0] if len(paths) == 1 else ", ".join(paths))
    res.info = next((i for i in parts[0].infos if i is not None), None)
    maps, order = _conn_order(parts)
    res.connections = _MergedConns(parts, maps, order)
    res.records = _MergedRecords(parts, maps)
    if all(p.slowest is not None for p in parts):
        res.slowest_timings = _merge_slowest(parts, maps, None, len(order[0]))
    _merge_rest(res, parts, maps)
    res.streamed = True
    return res


def _merge_slowest(parts: list[ShardResult], maps: list, conns: list | None,
                   nconns: int = 0) -> tuple:
    """The workers' slowest-transaction candidates as one pass orders them: slowest
    first, then in timing order (start of the first stage, then connection order, then
    the record's place in its connection, which the worker's creation index keeps).
    Without ``conns`` (a streamed merge), a connection's place is its global id (TCP) or
    the TCP count plus its UDP flow number."""
    n = min(p.slowest[0] for p in parts)
    if conns is not None:
        pos = {c["id"]: k for k, c in enumerate(conns)}
    else:
        ntcp = sum(p.conn_first[1] for p in parts)
        pos = _Positions(ntcp, nconns)
    cands = []
    for i, p in enumerate(parts):
        m = maps[i]
        for j, r in p.slowest[1]:
            c = r.get("conn")
            if c in m:
                r["conn"] = m[c]
            st = r["stages"][0]["start_ts"] if r.get("stages") else 0.0
            cands.append((-(r.get("total_s") or 0), st, pos.get(r.get("conn"), len(pos)), j,
                          r))
    cands.sort(key=lambda x: x[:4])
    return n, [x[4] for x in cands[:n]]


def _needs_one_pass(parts: list[ShardResult]) -> bool:
    """Connections the application dispatcher ties together (FTP control -> data) must be
    seen by one worker, and linked by the list merge (:func:`merge` post-processes lists
    only: a single part whose records wait in stores, as several files with one job
    give, is run again too)."""
    stored = any(isinstance(p.result.records, RecordStore) for p in parts)
    return (len(parts) > 1 or stored) and any(
        "ftp-expect" in p.result.records.types if isinstance(p.result.records, RecordStore)
        else any(r.get("type") == "ftp-expect" for r in p.result.records) for p in parts)


class _Positions:
    """A connection's place in a merged Result's list from its global id."""

    def __init__(self, ntcp: int, n: int):
        self.ntcp, self.n = ntcp, n

    def get(self, cid, default=None):
        if type(cid) is int:
            return cid if 0 <= cid < self.ntcp else default
        if type(cid) is str and cid.startswith("udp/"):
            return self.ntcp + int(cid[4:])
        return default

    def __len__(self) -> int:
        return self.n


# --------------------------------------------------------------------------- running

def _worker(paths, shard, nshards, tcp, app, want_lines, q, progress_arr, sizes, slowest=0,
            store=False):
    # a worker makes no cyclic garbage worth a pass and exits when done: no collector at
    # all (re-enabled after the analysis, its first pass walked every object of it while
    # the result was being written)
    import gc
    gc.disable()
    try:
        buf: list = []
        lines = None
        if want_lines:
            def lines(frame, conn, p, s, _b=buf, _a=buf.append):
                _a((frame, shard, conn, p, s))
                if len(_b) >= LINE_CHUNK:
                    q.put(("lines", _b[:]))
                    _b.clear()
        r = analyse_shard(paths, shard, nshards, tcp, app, lines,
                          _shared_counter(progress_arr, shard), slowest, store)
        if buf:
            q.put(("lines", buf[:]))
        # the result goes through a file: the worker writes it in chunks and exits, and
        # the parent reads it only once every worker is gone, so the process tree never
        # holds a worker's result, its pickled bytes and the parent's copy at once
        q.put(("done", dump_result(r)))
    except BaseException:   # the parent reports it; a worker must never hang the run
        import traceback
        q.put(("error", traceback.format_exc()))


def _shared_counter(progress_arr, shard):
    if progress_arr is None:
        return None

    def counter(off, frames):
        progress_arr[2 * shard] = off
        progress_arr[2 * shard + 1] = frames
    return counter


# Records pickled per chunk of a shard result file (the pickler's memo, which keeps every
# pickled object alive until the end of a dump, stays this small).
DUMP_CHUNK = 2048


def dump_result(r: ShardResult) -> str:
    """Write a shard result to a temporary file (deleted by :func:`load_result`): the
    result without its lists, then the connections, records and record keys in chunks,
    each list emptied as it is written."""
    import pickle
    import tempfile
    res = r.result
    if isinstance(res.connections, RecordStore):
        return _dump_stored(r)
    lists = (res.connections, res.records, r.record_keys)
    res.connections, res.records, r.record_keys = [], [], []
    fd, path = tempfile.mkstemp(prefix="dissect-shard-", suffix=".pickle")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(r, f, protocol=pickle.HIGHEST_PROTOCOL)
            for n, lst in enumerate(lists):
                pickle.dump(len(lst), f)
                for i in range(0, len(lst), DUMP_CHUNK):
                    chunk = lst[i:i + DUMP_CHUNK]
                    if n == 0:
                        chunk = wrap_records(chunk)
                    pickle.dump(chunk, f, protocol=pickle.HIGHEST_PROTOCOL)
                    lst[i:i + DUMP_CHUNK] = [None] * len(chunk)
    except BaseException:
        os.unlink(path)
        raise
    return path


def _dump_stored(r: ShardResult) -> str:
    """dump_result() of a result whose records are in stores: the result without them,
    then each store's pickled batches as they are (none is unpickled)."""
    import pickle
    import tempfile
    res = r.result
    stores = (res.connections, res.records)
    res.connections = res.records = None
    fd, path = tempfile.mkstemp(prefix="dissect-shard-", suffix=".pickle")
    try:
        with os.fdopen(fd, "wb") as f:
            for st in stores:
                st.flush()
            pickle.dump(r, f, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.dump(([st.counts() for st in stores], [st.types for st in stores]), f,
                        protocol=pickle.HIGHEST_PROTOCOL)
            for st in stores:
                st.write_to(f)
                st.close()
    except BaseException:
        os.unlink(path)
        raise
    return path


def load_result(path: str) -> ShardResult:
    """Read (and delete) a file :func:`dump_result` wrote. Records that a worker kept in
    stores stay in the file (unlinked, read through an open descriptor) as stores."""
    import pickle
    try:
        with open(path, "rb") as f:
            r = pickle.load(f)
            if r.result.connections is None:
                counts, types = pickle.load(f)
                blobs = FileBlobs(os.dup(f.fileno()))
                off = f.tell()
                r.result.connections, off = RecordStore.from_file(
                    blobs, off, counts[0], types[0], wrap_records, unwrap_plain)
                r.result.records, off = RecordStore.from_file(blobs, off, counts[1],
                                                              types[1])
                return r
            lists = []
            for k in range(3):
                n = pickle.load(f)
                lst: list = []
                while len(lst) < n:
                    lst += unwrap_records(pickle.load(f)) if k == 0 else pickle.load(f)
                lists.append(lst)
    finally:
        os.unlink(path)
    r.result.connections, r.result.records, r.record_keys = lists
    return r


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def run(paths, jobs: int | None = None, tcp: bool = True, app: bool = True,
        on_line=None, progress=None, slowest: int = 0, stream: bool = False) -> Result:
    """Analyse ``paths`` (one capture, or several taken as one) with ``jobs`` processes.

    ``on_line(str)`` gets the JSONL packet lines in frame order (connection ids global);
    ``progress(done_fraction, packets_done)`` is called now and then; ``slowest``: the
    workers also find the candidates for that many slowest transactions (the report's
    table; ``Result.slowest_timings``). One file with one job is the plain
    :class:`~dissect.engine.Engine` run. ``stream``: the records wait on disk and the
    Result is a streamed one (``Result.streamed``: read it with
    :func:`dissect.engine.finish_stream`), so that memory does not hold them all."""
    paths = [str(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    jobs = max(1, jobs or default_jobs())
    if len(paths) == 1 and jobs == 1:
        size = _size(paths[0]) or 1
        cb = None
        if on_line is not None:
            from dissect.report.jsonl import packet_line

            def cb(fr, d, v):
                on_line(packet_line(fr, d, v.flags, v.conn, v.values))
        prog = (lambda f, b: progress(min(1.0, b / size), f)) if progress else None
        return Engine(paths[0], tcp=tcp, app=app, on_frame=cb,
                      stream=stream).run(progress=prog)
    parts = _run_shards(paths, jobs, tcp, app, on_line, progress, slowest, stream)
    if _needs_one_pass(parts):
        _close_parts(parts)
        parts = _run_shards(paths, 1, tcp, app, None, None, slowest)
    return merge(paths, parts, app)


def _close_parts(parts: list[ShardResult]) -> None:
    for p in parts:
        for st in (p.result.connections, p.result.records):
            if isinstance(st, RecordStore):
                st.close()


def _size(p) -> int:
    try:
        return os.path.getsize(p)
    except OSError:
        return 0


def _run_shards(paths, nshards, tcp, app, on_line, progress, slowest=0,
                store=False) -> list[ShardResult]:
    if nshards == 1:
        return [analyse_shard(paths, 0, 1, tcp, app,
                              _local_lines(on_line) if on_line else None, None, slowest,
                              store)]
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    sizes = [_size(p) for p in paths]
    total = sum(sizes) or 1
    arr = ctx.Array("d", 2 * nshards, lock=False) if progress else None
    # Without packet lines to merge, the parent analyses shard 0 itself while the workers
    # take the others: one process fewer, and shard 0's result is never copied.
    own = on_line is None
    first = 1 if own else 0
    queues = {i: ctx.Queue(QUEUE_DEPTH) for i in range(first, nshards)}
    procs = {i: ctx.Process(target=_worker, daemon=True,
                            args=(paths, i, nshards, tcp, app, on_line is not None,
                                  queues[i], arr, sizes, slowest, store))
             for i in range(first, nshards)}
    for p in procs.values():
        p.start()
    results: dict[int, ShardResult] = {}
    files: dict[int, str] = {}
    last = [0.0]

    def tick():
        if progress is not None:
            now = time.monotonic()
            if now - last[0] >= 0.2:
                last[0] = now
                done = min(arr[0::2])
                progress(min(1.0, done / total), int(min(arr[1::2])))

    def stream(i):
        q = queues[i]
        while True:
            try:
                msg = q.get(timeout=0.2)
            except Exception:   # queue.Empty: nothing yet
                if not procs[i].is_alive() and q.empty():
                    raise RuntimeError(f"worker {i} died (exit code {procs[i].exitcode})")
                tick()
                continue
            kind, val = msg
            if kind == "lines":
                yield from val
            elif kind == "done":
                files[i] = val
                return
            else:
                raise RuntimeError(f"worker {i} failed:\n{val}")

    try:
        if own:
            count = _shared_counter(arr, 0)
            counter = None
            if count is not None:
                def counter(off, frames):
                    count(off, frames)
                    tick()
            results[0] = analyse_shard(paths, 0, nshards, tcp, app, None, counter, slowest,
                                       store)
        if on_line is not None:
            emit_lines((stream(i) for i in range(nshards)), nshards, on_line, tick)
        else:
            for i in range(first, nshards):
                for _ in stream(i):
                    pass
        for p in procs.values():
            p.join()
        for i in range(first, nshards):
            results[i] = load_result(files.pop(i))
    finally:
        for p in procs.values():
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
        for f in files.values():    # a run that failed half-way leaves no files behind
            try:
                os.unlink(f)
            except OSError:
                pass
    return [results[i] for i in range(nshards)]


def emit_lines(streams, nshards: int, on_line, tick=None) -> None:
    """Merge the workers' packet lines by frame number, giving connections their global
    ids as they first appear (the order of first frames, as in one pass)."""
    tmaps: list[dict] = [{} for _ in range(nshards)]
    ntcp = nudp = 0
    n = 0
    for _frame, i, conn, p, s in heapq.merge(*streams):
        if conn is None:
            on_line(p)
        else:
            m = tmaps[i]
            g = m.get(conn)
            if g is None:
                if type(conn) is int:
                    g = m[conn] = str(ntcp)
                    ntcp += 1
                else:
                    g = m[conn] = f'"udp/{nudp}"'
                    nudp += 1
            on_line(p + ',"conn":' + g + s)
        n += 1
        if tick is not None and not n & 0xFFF:
            tick()


def _local_lines(on_line):
    """In-process shard: lines come in frame order already; conn ids are global."""
    def lines(frame, conn, p, s):
        if conn is None:
            on_line(p)
        else:
            on_line(p + ',"conn":' + (str(conn) if type(conn) is int else f'"{conn}"') + s)
    return lines


# --------------------------------------------------------------------------- the CLI's entry

# Captures smaller than this (all files together) are analysed in one process: starting
# workers costs more than it saves below a few MB.
SPLIT_MIN_BYTES = 8 * 1024 * 1024


def expand(patterns) -> list[str]:
    """File arguments with shell-style patterns ('captures/*.pcap') expanded, sorted."""
    import glob

    from dissect.errors import CaptureIOError
    out: list[str] = []
    for p in patterns:
        if glob.has_magic(p):
            found = sorted(glob.glob(p))
            if not found:
                raise CaptureIOError("no file matches the pattern", path=p)
            out += found
        else:
            out.append(p)
    return out


def run_any(paths: list[str], jobs: int | None = None, engine: str = "local",
            scheduler: str | None = None, tcp: bool = True, app: bool = True,
            on_line=None, progress=None, slowest: int = 0, stream: bool = False) -> Result:
    """What ``dissect analyze`` runs: local processes or a Dask cluster. ``stream``: a
    streamed Result where the local engine can give one (see :func:`run`)."""
    with gc_paused():
        return _run_any(paths, jobs, engine, scheduler, tcp, app, on_line, progress,
                        slowest, stream)


def _run_any(paths, jobs, engine, scheduler, tcp, app, on_line, progress,
             slowest=0, stream=False) -> Result:
    if engine == "dask":
        from dissect import distributed
        return distributed.run(paths, scheduler=scheduler, jobs=jobs, tcp=tcp, app=app,
                               on_line=on_line, progress=progress)
    jobs = jobs or default_jobs()
    if sum(_size(p) for p in paths) < SPLIT_MIN_BYTES:
        jobs = 1
    return run(paths, jobs=jobs, tcp=tcp, app=app, on_line=on_line, progress=progress,
               slowest=slowest, stream=stream)
