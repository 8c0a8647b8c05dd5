"""Transport-layer glue for the analysis path: TCP analysis, UDP flows, stream reassembly
and the application dispatcher, fed one segment/datagram at a time (sans-I/O).

Connection ids: TCP connections are numbered exactly like tshark's ``tcp.stream`` (ints);
UDP flows are ``"udp/N"`` in order of first appearance (strings, so the two never clash).
"""

from __future__ import annotations

import dissect.tuples as _tuples
from dissect.analysis.flows import UdpFlows
from dissect.analysis.reassembly import Reassembler
from dissect.analysis.tcp import TcpAnalyzer
from dissect.analysis.turns import TurnTable
from dissect.columns.filearray import FileArray
from dissect.columns.segment import TcpSegment, UdpDatagram
from dissect.engine import Verdict
from dissect.engine import optional as _optional
from dissect.store import RecordKeys

# Application records per pickled batch of a record store (dissect.store.BATCH is for
# smaller records).
APP_BATCH = 128


def udp_id(n: int) -> str:
    return f"udp/{n}"


class TransportAnalyzer:
    """``tag=True`` is for one worker of a split run (:mod:`dissect.parallel`): every
    application record gets a merge key (``record_keys``, aligned with the records) that
    orders the records of all workers as one pass would have emitted them, and
    :meth:`finish` leaves the capture-level post-processing to whoever merges."""

    def __init__(self, app: bool = True, tag: bool = False, store: bool = False):
        self.tag = tag
        self.store = store
        self.conn_first = None
        # with ``store``, the keys as columns (RecordKeys) and the records on disk
        self.record_keys = RecordKeys() if store else []
        self._seen = 0
        self._rfirst: dict = {}     # conn -> frame of its first reassembly push
        self._tfirst: dict = {}     # conn -> merge clock of its first application event
        self._ufirst: dict = {}     # UDP flow id -> its first datagram given to the app
        self.tcp = TcpAnalyzer(store=store)
        self.udp = UdpFlows()
        self.app = None
        self.reasm = None
        self._closed: set = set()   # connections whose streams were flushed (RST / both FINs)
        self._fins: dict = {}
        self._metas: dict = {}      # conn -> its meta dict (made once, dropped at close)
        # request/response turns of the connections while their protocol is not known
        self._turns = TurnTable()
        # What is kept above TCP for a connection that sleeps (TcpAnalyzer.on_sleep): its
        # closed mark, the dispatcher's state for it (once ended, one shared object per
        # state and name) and its protocol name, as one byte by connection id, a code
        # into _cold_codes (0: nothing asleep), instead of entries in three hash tables
        # (about 160 bytes a connection); put back when a segment wakes it.
        self._cold = FileArray("B")    # (a file mapping once there are many)
        self._cold_codes: list = [None]
        self._cold_index: dict = {}
        if app:
            Dispatcher = _optional("dissect.analysis.app.dispatch", "AppDispatcher")
            if Dispatcher is not None:
                self.app = Dispatcher()
                self.reasm = Reassembler()
                self.tcp.on_sleep = self._sleep
                self.tcp.on_wake = self._wake
                if store:
                    from dissect.store import RecordStore
                    # application records are large (an HTTP one, with its headers,
                    # about 1.5 KB): a smaller batch, so that the one being filled
                    # stays small
                    self.app.records = RecordStore(batch=APP_BATCH, prefix="dissect-apprec-")

    def feed(self, t) -> Verdict:
        if type(t) is TcpSegment:
            pv = self.tcp.feed(t)
            (_frame, conn, direction, flags, ack_rtt, _acked, _bif, _dupn, _dupf, _rto,
             _rtof, irtt, _bytemap, _reason) = _tuples.view(pv)
            # the values are made from pv only when someone reads them (Verdict.values)
            lazy = pv if (flags or ack_rtt is not None or irtt is not None) else None
            if self.reasm is not None:
                (frame, ts, _src, _dst, _sport, _dport, _seq, _ack, _flags, _win, plen, _opts,
                 _payload, _poff, _vlan, _iface) = _tuples.view(t)
                if plen:
                    # turns are kept until the connection's protocol is known
                    if conn not in self.app.protocols:
                        self._turns.data(conn, direction, plen, frame, ts)
                if conn not in self._closed:
                    self._stream(t, conn, direction, frame)
                    if self.tag:    # (only a stream's parser makes records here)
                        self._tag(0, frame)
            return Verdict(conn, flags, None, direction, lazy)
        if type(t) is UdpDatagram:
            fid, d = self.udp.feed(t)
            cid = udp_id(fid)
            if self.app is not None:
                f = self.udp.flows[fid]
                if self.tag and cid not in self._ufirst:
                    self._ufirst[cid] = t.frame
                self.app.on_datagram(cid, {"client": f.client, "server": f.server, "proto": "udp"},
                                     t.payload, t.frame, t.ts, (t.src, t.sport), (t.dst, t.dport))
                if self.tag:
                    self._tag(0, t.frame)
            return Verdict(cid, (), None, d)
        return Verdict()

    def _tag(self, phase: int, x) -> None:
        """Merge key (phase, x) for the records made since the last call."""
        recs = self.app.records
        n = len(recs) if type(recs) is list else recs.size   # a RecordStore
        if n > self._seen:
            self.record_keys.extend([(phase, x)] * (n - self._seen))
            self._seen = n

    def _stream(self, seg, conn: int, direction: int, frame: int) -> None:
        if self.tag:
            if conn not in self._rfirst:
                self._rfirst[conn] = frame
            if conn not in self._tfirst:
                self._tfirst[conn] = (0, frame)
        meta = self._meta(conn)
        for it in self.reasm.push(seg, conn, direction):
            d, kind, value, f, ts = _tuples.view(it)
            self.app.on_stream(conn, meta, d, kind, value, f, ts)
        if not self.app.wants(conn):
            # unknown protocol, a failed parser, or a data connection counted elsewhere:
            # stop reassembling it (its buffers are freed now)
            self.reasm.close(conn)
            self._ended(conn)
            return
        # a connection that is over frees its reassembly buffers now, not at the end of
        # the capture: memory follows the concurrent connections, not all of them
        flags = _tuples.view(seg)[8]
        if flags & 0x04:
            self._close(conn, seg)
        elif flags & 0x01:
            n = self._fins.get(conn, 0) | (1 << direction)
            self._fins[conn] = n
            if n == 3:
                self._close(conn, seg)

    def _meta(self, conn) -> dict:
        m = self._metas.get(conn)
        if m is None:
            c = self.tcp._live(conn) if conn < len(self.tcp.connections) else None
            m = {"proto": "tcp"} if c is None else \
                {"client": c.client, "server": c.server, "proto": "tcp"}
            self._metas[conn] = m
        return m

    def _close(self, conn, seg) -> None:
        meta = self._meta(conn)
        for it in self.reasm.close(conn, seg.frame, seg.ts):
            self.app.on_stream(conn, meta, it.direction, it.kind, it.value, it.frame, it.ts)
        self.app.on_close(conn, seg.ts)
        self._ended(conn)

    def _ended(self, conn) -> None:
        """A connection whose streams are done with: what was kept for it goes, but the
        mark that it is closed. Its merge clocks go too: the dispatcher's finish makes no
        record for a connection it has closed, and they order only those."""
        self._closed.add(conn)
        self._fins.pop(conn, None)
        self._metas.pop(conn, None)
        if self.tag:
            self._rfirst.pop(conn, None)
            self._tfirst.pop(conn, None)

    def _sleep(self, cids: list) -> None:
        """Connections ``cids`` went dormant: what is kept for them here and in the
        dispatcher goes to _cold, if it is all of a kind that can (a dispatcher state that
        is over - neither probing nor parsing: the dispatcher reads only its state and
        name again, as it does of the shared state on_close leaves - and at most 255 kinds
        in all)."""
        app = self.app
        cold, codes, index = self._cold, self._cold_codes, self._cold_index
        turns = self._turns
        for cid in cids:
            turns.sleep(cid)
            st = app.tcp.get(cid)
            if st is not None and (st.state == "probing" or st.state == "parsing"):
                continue    # the dispatcher still works on it
            closed = cid in self._closed
            name = app.protocols.get(cid)
            if st is None and not closed and name is None:
                continue
            kind = (closed, None if st is None else st.state, None if st is None else st.name,
                    name)
            code = index.get(kind)
            if code is None:
                if len(codes) > 255:
                    continue
                code = index[kind] = len(codes)
                codes.append(kind)
            if len(cold) <= cid:
                cold.resize_zero(cid + 1)
            cold[cid] = code
            if closed:
                self._closed.discard(cid)
            if st is not None:
                del app.tcp[cid]
            if name is not None:
                del app.protocols[cid]

    def _wake(self, cid: int) -> None:
        """Dormant connection ``cid`` woke: what _sleep put away comes back."""
        cold = self._cold
        if cid >= len(cold) or not cold[cid]:
            return
        closed, state, sname, name = self._cold_codes[cold[cid]]
        cold[cid] = 0
        if closed:
            self._closed.add(cid)
        if state is not None:
            self.app.tcp[cid] = self.app.ended_state(state, sname)
        if name is not None:
            self.app.protocols[cid] = name

    def protocol_of(self, cid):
        """Connection ``cid``'s application protocol name (None when none is known),
        asleep or not."""
        if self.app is None:
            return None
        name = self.app.protocols.get(cid)
        if name is None and type(cid) is int and 0 <= cid < len(self._cold) and self._cold[cid]:
            name = self._cold_codes[self._cold[cid]][3]
        return name

    def finish(self) -> tuple[list, list]:
        records: list = []
        if self.reasm is not None:
            for conn, items in self.reasm.finish().items():
                meta = self._meta(conn)
                if self.tag:
                    clock = (1, self._rfirst.get(conn, 0))
                    self._tfirst.setdefault(conn, clock)
                for it in items:
                    self.app.on_stream(conn, meta, it.direction, it.kind, it.value, it.frame, it.ts)
                self.app.on_close(conn, None)
                if self.tag:
                    self._tag(1, clock[1])
        if self.store:
            return self._finish_store()
        conns = self.tcp.drain_records()
        for f in self.udp.flows:
            r = f.record()
            r["id"] = udp_id(f.id)
            conns.append(r)
        if self.app is not None:
            records = self.app.finish()
            exchanges = self._exchanges()
            for c in conns:
                c["app"] = self.protocol_of(c["id"])
            if self.tag:
                self._tag_finish(records, exchanges)
                records += exchanges
                return conns, records
            records += exchanges
            from dissect.analysis.post import postprocess
            records = postprocess(conns, records)
        return conns, records

    def _exchanges(self):
        """The ``tcp-exchange`` records of the connections whose protocol is still not
        known, made as they are read (:class:`dissect.analysis.turns.Exchanges`)."""
        self._turns.close()
        return self._turns.records(self._unknown)

    def _unknown(self, conn) -> bool:
        return self.protocol_of(conn) is None

    def _finish_store(self):
        """finish() of an analyzer made with ``store``: the connection and application
        records in :class:`dissect.store.RecordStore` s (on disk but for a last batch each),
        except when FTP data connections must be linked (that needs every record at once:
        then lists, as without ``store``)."""
        ff = FileArray("q")
        conns = self.tcp.drain_store(self.protocol_of if self.app is not None else None, ff)
        # (first frame of each connection record in order, how many are TCP): what a
        # split run's merge numbers connections by without reading the records
        self.conn_first = (ff, len(ff))
        for f in self.udp.flows:
            r = f.record()
            r["id"] = udp_id(f.id)
            r["app"] = self.protocol_of(r["id"])
            ff.append(r["first_frame"])
            conns.append(r)
        if self.app is None:
            from dissect.store import RecordStore
            return conns, RecordStore()
        records = self.app.finish()
        exchanges = self._exchanges()
        if self.tag:
            self._tag_finish(records, exchanges)
        records += exchanges
        if not self.tag and "ftp-expect" in records.types:
            from dissect.analysis.post import postprocess
            lconns = conns.to_list()
            return lconns, postprocess(lconns, records.to_list())
        return conns, records

    def _tag_finish(self, records, exchanges) -> None:
        """Merge keys of the records the dispatcher's finish made, and of ``exchanges``
        (to be appended next)."""
        # records of the dispatcher's own finish: per connection, TCP ones (in
        # order of the connection's first application event) before UDP ones
        seen = records.iter_from(self._seen) if self.store else records[self._seen:]
        for r in seen:
            c = r.get("conn")
            if type(c) is int and c in self._tfirst:
                self.record_keys.append((2, self._tfirst[c]))
            elif c in self._ufirst:
                self.record_keys.append((3, self._ufirst[c]))
            else:
                self.record_keys.append((4, 0))
        self._seen = len(records)
        # exchanges last, in request order (so the merge sorts them the same way)
        n = 0
        for f in exchanges.frames():
            self.record_keys.append((5, f))
            n += 1
        self._seen = len(records) + n
