"""Capture-wide accumulators for the analysis path: counts, protocol hierarchy by OSI
layer, conversations, anomalies. Fed per frame from the fast decode; memory grows with
the number of distinct chains/conversations/anomaly names, not with the frames."""

from __future__ import annotations

from array import array

import dissect.tuples as _tuples
from dissect.osi import layer_of

# (protocol chain, source, destination) cells kept; beyond this, new address pairs are
# counted per chain only, so a scan of millions of hosts cannot grow memory without bound.
MAX_CONVERSATIONS = 200_000
# add_conn calls between two calls of the fold hook (a power of two, minus one; read
# when a summary is made).
FOLD_MASK = (1 << 14) - 1
# Examples (frame numbers) kept per anomaly name.
MAX_ANOMALY_EXAMPLES = 5


def _add(into: dict, k, pk: int, by: int) -> None:
    """Add ``pk`` packets and ``by`` bytes to ``into[k]`` (a [packets, bytes] cell)."""
    r = into.get(k)
    if r is None:
        into[k] = [pk, by]
    else:
        r[0] += pk
        r[1] += by


def _add_cells(into: dict, cells: dict) -> None:
    """Add ``cells`` (key -> [packets, bytes]) into ``into``."""
    for k, (pk, by) in cells.items():
        _add(into, k, pk, by)


class _Parked:
    """Per-connection cells as columns: ((chain, id), (packets, bytes)) in 28 bytes each
    (TCP connection ids are ints), chains by index."""

    def __init__(self):
        self.chains: list = []
        self._index: dict = {}
        self.chain, self.conn = array("i"), array("q")
        self.packets, self.bytes = array("q"), array("q")

    def add(self, key: tuple, pk: int, by: int) -> None:
        chain, conn = key
        i = self._index.get(chain)
        if i is None:
            i = self._index[chain] = len(self.chains)
            self.chains.append(chain)
        self.chain.append(i)
        self.conn.append(conn)
        self.packets.append(pk)
        self.bytes.append(by)

    def __iter__(self):
        chains = self.chains
        for k in range(len(self.conn)):
            yield ((chains[self.chain[k]], self.conn[k]), (self.packets[k], self.bytes[k]))


class CaptureSummary:
    def __init__(self):
        self.frames = 0
        self.bytes_captured = 0
        self.bytes_wire = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.truncated_frames = 0
        # (chain, src, dst) -> [packets, bytes, first ts, last ts, first frame] (the first
        # frame lets results of several workers merge in the order one pass would give)
        self._cells: dict[tuple, list] = {}
        self.conversations_dropped = 0
        self.anomalies: dict[str, list] = {}           # name -> [count, [frames...]]
        self.flag_counts: dict[str, int] = {}
        # (chain, connection id) -> [packets, bytes]; with ``apps`` (connection id ->
        # application protocol, known once the capture is done) it puts the application
        # layer into the hierarchy and the per-layer counts
        self._conn_cells: dict[tuple, list] = {}
        self.apps: dict = {}
        # chain + (application protocol,) -> [packets, bytes]: the per-connection cells
        # folded in once each connection's application was known (fold_apps)
        self._app_cells: dict[tuple, list] = {}
        # the cells of connections that are over without an application protocol (it
        # may still be named at the end: FTP data linking), as columns (_Parked)
        self._parked = None
        # the cell of the last (chain, src, dst) and of the last (chain, connection) added
        # to: consecutive frames are mostly of the same conversation, and a hit on these
        # (the same objects) skips hashing the key
        self._lchain = self._lsrc = self._ldst = self._lcell = None
        self._cchain = self._cconn = self._ccell = None
        # called with the summary every FOLD_MASK + 1 add_conn calls while a run goes on
        # (the engine's: fold the cells of connections that are over, fold_conns)
        self.fold_hook = None
        self._nadd = 0
        self._fold_mask = FOLD_MASK

    def add(self, fr, decoded) -> None:
        """Per frame: one dict update keyed by (chain, src, dst); the hierarchy and the
        conversations are derived from these cells at the end."""
        self.frames += 1
        number, ts, caplen, wl, _lt, _iface, _data = _tuples.view(fr)
        chain, src, dst, _t, anomalies, _vlan = _tuples.view(decoded)
        self.bytes_captured += caplen
        self.bytes_wire += wl
        if self.first_ts is None or ts < self.first_ts:
            self.first_ts = ts
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts
        if caplen < wl:
            self.truncated_frames += 1
        if chain is self._lchain and src is self._lsrc and dst is self._ldst:
            cell = self._lcell
        else:
            key = (chain, src, dst)
            cell = self._cells.get(key)
            if cell is None and len(self._cells) >= MAX_CONVERSATIONS:
                # counted under the chain alone (and not remembered: each such frame is
                # counted as dropped)
                self.conversations_dropped += 1
                key = (chain, None, None)
                cell = self._cells.get(key)
                if cell is None:
                    cell = self._cells[key] = [0, 0, ts, ts, number]
            else:
                if cell is None:
                    cell = self._cells[key] = [0, 0, ts, ts, number]
                self._lchain, self._lsrc, self._ldst, self._lcell = chain, src, dst, cell
        cell[0] += 1
        cell[1] += wl
        if ts > cell[3]:
            cell[3] = ts
        if anomalies:
            for a in anomalies:
                self.anomaly(a, number)

    def merge(self, parts: list["CaptureSummary"], conn_maps=None) -> None:
        """Add the counts of ``parts`` (summaries of disjoint sets of frames, e.g. one per
        worker) so that the result equals one pass over all the frames: cells in order of
        their first frame, anomaly examples the earliest frames. ``conn_maps[i]`` (a dict)
        renames the connection ids of part i's per-connection cells (local -> global)."""
        for i, p in enumerate(parts):
            conn_map = conn_maps[i].get if conn_maps else None
            self.frames += p.frames
            self.bytes_captured += p.bytes_captured
            self.bytes_wire += p.bytes_wire
            self.truncated_frames += p.truncated_frames
            self.conversations_dropped += p.conversations_dropped
            for ts in (p.first_ts, p.last_ts):
                if ts is None:
                    continue
                if self.first_ts is None or ts < self.first_ts:
                    self.first_ts = ts
                if self.last_ts is None or ts > self.last_ts:
                    self.last_ts = ts
            for k, v in p.flag_counts.items():
                self.flag_counts[k] = self.flag_counts.get(k, 0) + v
            _add_cells(self._app_cells, p._app_cells)
            for (chain, conn), (pk, by) in p.conn_cells():
                key = (chain, conn_map(conn) if conn_map and conn is not None else conn)
                _add(self._conn_cells, key, pk, by)
        cells = sorted(((c[4], k, c) for p in parts for k, c in p._cells.items()),
                       key=lambda x: x[0])
        for _n, key, c in cells:
            m = self._cells.get(key)
            if m is None:
                self._cells[key] = list(c)
            else:
                m[0] += c[0]
                m[1] += c[1]
                if c[3] > m[3]:
                    m[3] = c[3]
                if c[4] < m[4]:
                    m[4], m[2] = c[4], c[2]
        names: dict[str, list] = {}
        for p in parts:
            for name, (count, frames) in p.anomalies.items():
                e = names.setdefault(name, [0, []])
                e[0] += count
                e[1].extend(frames)
        for name, (count, frames) in names.items():
            e = self.anomalies.get(name)
            if e is None:
                self.anomalies[name] = e = [0, []]
            e[0] += count
            e[1] = (e[1] + sorted(f for f in frames if f is not None))[:MAX_ANOMALY_EXAMPLES]

    @property
    def chains(self) -> dict:
        out: dict[tuple, list[int]] = {}
        for (chain, _s, _d), (pk, by, _f, _l, _n) in self._cells.items():
            _add(out, chain, pk, by)
        return out

    @property
    def conversations(self) -> dict:
        out: dict[tuple, list] = {}
        for (chain, a, b), (pk, by, first, last, _n) in self._cells.items():
            if a is None:
                continue
            key = (a, b) if a <= b else (b, a)
            conv = out.get(key)
            if conv is None:
                out[key] = conv = [0, 0, first, last, set()]
            conv[0] += pk
            conv[1] += by
            conv[2] = min(conv[2], first)
            conv[3] = max(conv[3], last)
            if chain:
                conv[4].add(chain[-1])
        return out

    def anomaly(self, name: str, frame: int | None) -> None:
        e = self.anomalies.get(name)
        if e is None:
            self.anomalies[name] = e = [0, []]
        e[0] += 1
        if frame is not None and len(e[1]) < MAX_ANOMALY_EXAMPLES:
            e[1].append(frame)

    def add_conn(self, chain: tuple, conn, wirelen: int) -> None:
        self._nadd += 1
        if not self._nadd & self._fold_mask and self.fold_hook is not None:
            self.fold_hook(self)
        if chain is self._cchain and conn == self._cconn:
            c = self._ccell
        else:
            key = (chain, conn)
            c = self._conn_cells.get(key)
            if c is None:
                if len(self._conn_cells) >= MAX_CONVERSATIONS:
                    return
                c = self._conn_cells[key] = [0, 0]
            self._cchain, self._cconn, self._ccell = chain, conn, c
        c[0] += 1
        c[1] += wirelen

    def fold_conns(self, app_if_done) -> int:
        """Fold the cells of the connections whose application protocol is known for
        good (``app_if_done(connection id)``: its name; "" for a connection that is over
        without one, whose cell is parked as columns; None to keep the cell) into their
        (chain, application) sums, while a run goes on, so that connections that are
        over keep (almost) nothing; returns how many cells were folded or parked."""
        cells = self._conn_cells
        done = []
        for key in cells:
            app = app_if_done(key[1])
            if app is not None:
                done.append((key, app))
        out = self._app_cells
        for key, app in done:
            pk, by = cells.pop(key)
            if not app:
                if self._parked is None:
                    self._parked = _Parked()
                self._parked.add(key, pk, by)
                continue
            k = key[0] + (app,)
            _add(out, k, pk, by)
        self._cchain = self._cconn = self._ccell = None
        return len(done)

    def fold_apps(self, app_of) -> None:
        """Fold the per-connection cells into their (chain, application) sums, once every
        connection's application protocol is known (``app_of(connection id)``, None when
        unknown): what the hierarchy and the layer counts read of them. A run whose
        connections' applications are final when its pass ends (a streamed one) keeps no
        cell per connection after it, and its parts merge as sums."""
        if app_of is not None:
            self._app_cells = self._app_chains(app_of)
        self._conn_cells = {}
        self._parked = None
        self._cchain = self._cconn = self._ccell = None

    def has_conn_cells(self) -> bool:
        """Whether per-connection cells are left (kept or parked), which need each
        connection's application protocol from the records."""
        return bool(self._conn_cells) or self._parked is not None

    def conn_cells(self):
        """((chain, connection id), (packets, bytes)) of every per-connection cell not
        folded yet, parked ones too (a connection parked and woken again has two)."""
        yield from self._conn_cells.items()
        if self._parked is not None:
            yield from self._parked

    def _app_chains(self, app_of=None) -> dict:
        """chain + (application protocol,) -> [packets, bytes], for connections whose
        application protocol is known (``app_of``, else ``self.apps``), with the sums
        already folded."""
        out: dict[tuple, list] = {}
        _add_cells(out, self._app_cells)
        get = self.apps.get if app_of is None else app_of
        for (chain, conn), (pk, by) in self.conn_cells():
            app = get(conn)
            if not app:
                continue
            key = chain + (app,)
            _add(out, key, pk, by)
        return out

    def flags(self, names) -> None:
        fc = self.flag_counts
        for n in names:
            fc[n] = fc.get(n, 0) + 1

    # ------------------------------------------------------------------ views

    def hierarchy(self) -> list[dict]:
        """Protocol hierarchy: one row per protocol path, grouped under its OSI layer."""
        rows: dict[tuple, list[int]] = {}
        for chain, (pk, by) in self.chains.items():
            for i in range(1, len(chain) + 1):
                path = chain[:i]
                _add(rows, path, pk, by)
        for path, (pk, by) in self._app_chains().items():
            rows[path] = [pk, by]
        out = []
        for path in sorted(rows):
            proto = path[-1]
            osi = layer_of(proto.split(".")[0] if proto not in ("ip.fragment",) else "ip")
            out.append({"path": "/".join(path), "protocol": proto, "osi": int(osi),
                        "layer": osi.label, "packets": rows[path][0], "bytes": rows[path][1]})
        return out

    def by_layer(self) -> list[dict]:
        """Packets and bytes per OSI layer (a frame counts once per layer it reaches)."""
        acc: dict[int, list] = {}

        def count(o, pk, by, proto):
            a = acc.setdefault(o, [0, 0, set()])
            a[0] += pk
            a[1] += by
            a[2].add(proto)

        for chain, (pk, by) in self.chains.items():
            protos: dict[int, set] = {1: {"frame"}}
            for p in chain:
                protos.setdefault(int(layer_of(p.split(".")[0])), set()).add(p)
            for o, ps in protos.items():
                count(o, pk, by, min(ps))
                acc[o][2] |= ps
        # application protocols of connections (once per frame, at the app's own layer,
        # unless the frame already reached that layer through its header chain)
        for path, (pk, by) in self._app_chains().items():
            o = int(layer_of(path[-1].split(".")[0]))
            if o not in {int(layer_of(p.split(".")[0])) for p in path[:-1]}:
                count(o, pk, by, path[-1])
        from dissect.osi import Osi
        return [{"osi": o, "layer": Osi(o).label, "packets": v[0], "bytes": v[1],
                 "protocols": sorted(v[2])} for o, v in sorted(acc.items(), reverse=True)]

    def top_conversations(self, n: int = 10) -> list[dict]:
        items = sorted(self.conversations.items(), key=lambda kv: -kv[1][1])[:n]
        return [{"a": k[0], "b": k[1], "packets": v[0], "bytes": v[1], "start_ts": v[2],
                 "duration_s": round(v[3] - v[2], 6), "protocols": sorted(v[4])}
                for k, v in items]

    def to_record(self) -> dict:
        dur = (self.last_ts - self.first_ts) if self.frames else 0.0
        return {
            "type": "summary",
            "frames": self.frames,
            "bytes_captured": self.bytes_captured,
            "bytes_wire": self.bytes_wire,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "duration_s": round(dur, 6),
            "truncated_frames": self.truncated_frames,
            "layers": self.by_layer(),
            "hierarchy": self.hierarchy(),
            "conversations": len(self.conversations),
            "top_conversations": self.top_conversations(),
            "anomalies": {k: {"count": v[0], "frames": v[1]} for k, v in
                          sorted(self.anomalies.items())},
            "tcp_analysis": dict(sorted(self.flag_counts.items())),
        }
