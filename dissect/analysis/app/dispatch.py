"""Which application protocol each connection speaks, and feeding its parser.

The registry is the ``PARSERS`` list of every module in :data:`MODULES` (imported lazily, so a
missing module only removes its protocols). For a TCP connection the dispatcher buffers the
reassembled stream until the first bytes of each side can be probed: every stream parser's
``probe(client_head, server_head, sport, dport)`` answers with a confidence, content first;
the server port matching a parser's hint ports only breaks near-ties. A confident answer
(>= :data:`CONFIDENT`) decides at once; otherwise the dispatcher waits for more bytes, up to
:data:`PROBE_LIMIT` per side or the end of the connection, and then takes the best answer
above :data:`PLAUSIBLE`, or calls the connection "unknown". The chosen parser then gets the
buffered bytes and everything after.

A parser that raises (our own error or a bug) stops for that stream only; the failure becomes
a named anomaly record and the rest of the capture is still parsed. UDP flows are probed on
each datagram until a datagram parser claims the flow.
"""

from __future__ import annotations

import importlib

from dissect.analysis.app.base import DatagramParser, StreamParser, anomaly
from dissect.errors import DissectError

MODULES = ("http", "websocket", "http2", "tls", "ftp", "smtp", "imap", "pop3", "dns", "rtc",
           "quic")
# A probe answer this sure decides immediately.
CONFIDENT = 0.8
# The least confidence accepted once no more bytes will help.
PLAUSIBLE = 0.3
# Bytes buffered per side while undecided (the head handed to probes is the first 512).
PROBE_LIMIT = 4096
HEAD = 512
# Datagrams probed per UDP flow before it is called unknown.
UDP_PROBES = 16
# How much a matching hint port adds: enough to break ties, never to beat content.
PORT_BONUS = 0.05

_registry: tuple[list, list] | None = None


def registry() -> tuple[list, list]:
    """(stream parser classes, datagram parser classes), in MODULES order."""
    global _registry
    if _registry is None:
        streams, grams = [], []
        for name in MODULES:
            try:
                mod = importlib.import_module(f"dissect.analysis.app.{name}")
            except ImportError:
                continue
            for cls in getattr(mod, "PARSERS", ()):
                if issubclass(cls, StreamParser):
                    streams.append(cls)
                elif issubclass(cls, DatagramParser):
                    grams.append(cls)
        _registry = (streams, grams)
    return _registry


def _score(cls, args, port) -> float:
    try:
        s = float(cls.probe(*args))
    except Exception:   # a probe must never take the dispatcher down
        return 0.0
    if s > 0 and port in getattr(cls, "ports", ()):
        s += PORT_BONUS
    return s


class _Tcp:
    __slots__ = ("meta", "items", "heads", "buffered", "parser", "state", "name")

    def __init__(self, meta):
        self.meta = meta
        self.items: list = []
        self.heads = [b"", b""]
        self.buffered = [0, 0]
        self.parser = None
        self.state = "probing"     # probing | parsing | unknown | failed
        self.name = None


_ENDED: dict = {}


def _ended(state: str, name):
    """The shared connection state of every ended connection with this state and name."""
    st = _ENDED.get((state, name))
    if st is None:
        st = _ENDED[(state, name)] = _Tcp(None)
        st.items = ()
        st.heads = st.buffered = None
        st.state, st.name = state, name
    return st


class AppDispatcher:
    # skip probes that cannot beat the best answer so far (the tests turn it off to compare)
    skip_bounded = True

    def __init__(self):
        self.streams, self.grams = registry()
        self.tcp: dict = {}
        self.udp: dict = {}
        self.records: list[dict] = []
        self.protocols: dict = {}   # connection id -> protocol name
        # endpoints announced by a control connection (FTP PORT/PASV/EPRT/EPSV): the next
        # connection to one of them is that protocol's data connection, whatever it carries
        self.expected: dict = {}    # (ip, port) -> protocol name

    # ------------------------------------------------------------------ TCP
    def on_stream(self, conn, meta, direction, kind, value, frame, ts) -> None:
        st = self.tcp.get(conn)
        if st is None:
            st = self.tcp[conn] = _Tcp(meta)
            server = meta.get("server")
            if server is not None and tuple(server) in self.expected:
                st.state = "data"
                st.name = self.expected.pop(tuple(server))
                self.protocols[conn] = st.name
        if st.state == "parsing":
            self._feed(conn, st, direction, kind, value, frame, ts)
            return
        if st.state != "probing":
            return
        if kind == "anomaly":
            self.records.append(anomaly("tcp", str(value), frame, "", conn))
            return
        st.items.append((direction, kind, value, frame, ts))
        if kind == "data":
            h = st.heads[direction]
            if len(h) < HEAD:
                st.heads[direction] = h + bytes(value[:HEAD - len(h)])
            st.buffered[direction] += len(value)
            full = max(st.buffered) >= PROBE_LIMIT
            self._probe(conn, st, final=full)

    @staticmethod
    def ended_state(state: str, name):
        """The shared state of every ended connection with this state and name."""
        return _ended(state, name)

    def wants(self, conn) -> bool:
        """Whether more bytes of this connection can still matter (probing or parsing)."""
        st = self.tcp.get(conn)
        return st is None or st.state in ("probing", "parsing")

    def on_close(self, conn, ts) -> None:
        st = self.tcp.get(conn)
        if st is None:
            return
        if st.state == "probing":
            self._probe(conn, st, final=True)
        if st.state == "parsing":
            self._call(conn, st, "close", ts)
        # keep the state and the name (for wants() and the flows table), drop the rest:
        # one shared object per (state, name), since a capture has a connection state
        # per connection it saw, and nothing changes an ended one again
        self.tcp[conn] = _ended("closed" if st.state == "parsing" else st.state, st.name)

    def _probe(self, conn, st, final: bool) -> None:
        meta = st.meta
        client = meta.get("client") or ("", 0)
        server = meta.get("server") or ("", 0)
        sport, dport = client[1], server[1]
        args = (st.heads[0], st.heads[1], sport, dport)
        best, best_s = None, 0.0
        for cls in self.streams:
            if best_s and self.skip_bounded:
                # a parser whose best possible answer cannot beat best_s is not asked
                # (the same sum _score makes, so equal stays equal)
                b = cls.probe_bound(sport, dport)
                if (b + PORT_BONUS if dport in cls.ports else b) <= best_s:
                    continue
            s = _score(cls, args, dport)
            if s > best_s:
                best, best_s = cls, s
        if best is not None and (best_s >= CONFIDENT or (final and best_s >= PLAUSIBLE)):
            st.state = "parsing"
            st.name = best.name
            self.protocols[conn] = best.name
            try:
                st.parser = best(conn=conn, meta=meta)
            except Exception as e:
                self._fail(conn, st, None, e)
                return
            items, st.items = st.items, ()
            for it in items:
                if st.state != "parsing":
                    break
                self._feed(conn, st, *it)
        elif final:
            st.state = "unknown"
            st.items = ()
        if st.state != "probing":
            # what only probing needed (up to 2 x 512 bytes of head per connection, kept
            # to the end of the capture otherwise)
            st.heads = st.buffered = st.meta = None

    def _feed(self, conn, st, direction, kind, value, frame, ts) -> None:
        if kind == "data":
            self._call(conn, st, "feed", direction, value, frame, ts)
        elif kind == "gap":
            self._call(conn, st, "gap", direction, value, frame, ts)
        else:
            self.records.append(anomaly(st.name or "tcp", str(value), frame, "", conn))

    def _call(self, conn, st, method, *args) -> None:
        try:
            out = getattr(st.parser, method)(*args)
        except Exception as e:
            frame = args[2] if method in ("feed", "gap") else None
            self._fail(conn, st, frame, e)
            return
        self._emit(conn, out)

    def _fail(self, conn, st, frame, e) -> None:
        name = "parser-gave-up" if isinstance(e, DissectError) else "parser-error"
        detail = f"{type(e).__name__}: {e}"
        self.records.append(anomaly(st.name or "?", name, frame, detail[:300], conn))
        st.state = "failed"
        st.parser = None
        st.items = ()
        st.heads = st.buffered = st.meta = None

    def _emit(self, conn, out) -> None:
        if not out:
            return
        for r in out:
            if r.get("conn") is None:
                r["conn"] = conn
            if r.get("type") == "ftp-expect" and r.get("port"):
                self.expected[(r.get("ip"), r.get("port"))] = "ftp-data"
            self.records.append(r)

    # ------------------------------------------------------------------ UDP
    def on_datagram(self, conn, meta, payload, frame, ts, src, dst) -> None:
        st = self.udp.get(conn)
        if st is None:
            st = self.udp[conn] = [None, 0, meta]      # parser, probes, meta
        p = st[0]
        if p is None:
            if st[1] >= UDP_PROBES or p is False:
                return
            st[1] += 1
            best, best_s = None, 0.0
            server = (meta.get("server") or ("", 0))[1]
            for cls in self.grams:
                s = _score(cls, (payload, src[1], dst[1]), server)
                if s > best_s:
                    best, best_s = cls, s
            if best is None or best_s < 0.5:
                return
            try:
                p = st[0] = best(conn=conn, meta=meta)
            except Exception as e:
                self.records.append(anomaly(best.name, "parser-error", frame, str(e)[:300], conn))
                st[0] = False
                return
            self.protocols[conn] = best.name
        elif p is False:
            return
        try:
            out = p.datagram(payload, frame, ts, src, dst)
        except Exception as e:
            name = "parser-gave-up" if isinstance(e, DissectError) else "parser-error"
            self.records.append(anomaly(getattr(p, "name", "?"), name, frame,
                                        f"{type(e).__name__}: {e}"[:300], conn))
            return
        self._emit(conn, out)

    # ------------------------------------------------------------------ end
    def finish(self) -> list[dict]:
        for conn, st in list(self.tcp.items()):
            if st.state in ("probing", "parsing"):
                self.on_close(conn, None)
        for conn, st in self.udp.items():
            p = st[0]
            if p:
                try:
                    self._emit(conn, p.close())
                except Exception as e:
                    self.records.append(anomaly(getattr(p, "name", "?"), "parser-error", None,
                                                str(e)[:300], conn))
        return self.records
