"""Request/response turns of the TCP connections whose application protocol is unknown:
the ``{"type": "tcp-exchange", ...}`` records (sans-I/O, fed by
:class:`dissect.analysis.transport.TransportAnalyzer`).

A turn opens with client bytes (which then extend its request) and server bytes answer it;
the next client bytes after an answer open the next turn. Turns are kept until the end of
the run - a connection's protocol may be recognised late, and only the connections still
unknown then get records - so they grow with the capture's length: they are rows of
columns (one per field, in file mappings once large: :mod:`dissect.columns.filearray`),
in the order turns open, which is the order of their request frames, the order the
records are given in. Only a live connection's last turn, the one still growing, is a
Python list; when TCP puts the connection to sleep its values go to its row.
"""

from __future__ import annotations

from dissect.columns.compact import Column
from dissect.columns.filearray import FileArray

# Turns listed per connection; past this, a connection's later turns are not listed.
MAX_EXCHANGES_PER_CONN = 10000

# The record's fields after "type" and "conn", in the order of TurnTable.cols and of a
# live turn's list (after its row number).
FIELDS = ("request_frame", "request_ts", "request_end_ts", "request_bytes",
          "response_frame", "response_ts", "response_end_ts", "response_bytes")
_TYPES = ("q", "d", "d", "q", "q", "d", "d", "q")


class TurnTable:
    """Every turn of every connection given to :meth:`data`, as columns."""

    __slots__ = ("_count", "_last", "_lastf", "_open", "cols", "conn", "ordered")

    def __init__(self):
        self.conn = FileArray("q")          # row -> its connection
        self.cols = [Column(t, mapped=True) for t in _TYPES]
        # live connection -> its last turn, [row, the eight fields, turns listed]
        self._open: dict = {}
        # by connection id, for a connection not in _open: turns listed, and 1 + the row
        # of its last turn if that may still grow (0: none, or the cap was reached)
        self._count = FileArray("q")
        self._last = FileArray("q")
        self._lastf = None
        # whether rows are in the order of their request frames (each frame opens at most
        # one turn and frames come in order, so always but for a hostile caller)
        self.ordered = True

    def __len__(self) -> int:
        return len(self.conn)

    def data(self, conn, direction: int, plen, frame, ts) -> None:
        """``plen`` bytes of connection ``conn`` (an int id), from the client (direction
        0) or the server, in frame ``frame`` at time ``ts``."""
        cur = self._open.get(conn)
        if cur is None:
            cur = self._revive(conn)
        if direction == 0:
            if cur is None or cur[6] is not None:
                self._begin(conn, cur, plen, frame, ts)
            else:
                cur[3] = ts
                cur[4] += plen
        elif cur is not None:
            if cur[6] is None:
                cur[5] = frame
                cur[6] = ts
            cur[7] = ts
            cur[8] += plen

    def _begin(self, conn, cur, plen, frame, ts) -> None:
        """A new turn: ``cur`` (the connection's last turn, or None) is over."""
        if cur is None:
            count = self._count
            n = count[conn] if type(conn) is int and 0 <= conn < len(count) else 0
        else:
            self._put(cur)
            n = cur[9]
        if n >= MAX_EXCHANGES_PER_CONN:
            if cur is not None:
                del self._open[conn]
                self._keep(conn, n, 0)
            return
        row = len(self.conn)
        self.conn.append(conn)
        c = self.cols
        c[0].append(frame)
        c[1].append(ts)
        c[2].append(ts)
        c[3].append(plen)
        c[4].append(None)
        c[5].append(None)
        c[6].append(None)
        c[7].append(0)
        last = self._lastf
        if last is not None and not (type(frame) is int and type(last) is int and frame > last):
            self.ordered = False
        self._lastf = frame
        self._open[conn] = [row, frame, ts, ts, plen, None, None, None, 0, n + 1]

    def _put(self, cur) -> None:
        """A live turn's values to its row (the request's first frame and time do not
        change)."""
        row = cur[0]
        c = self.cols
        c[2][row] = cur[3]
        c[3][row] = cur[4]
        c[4][row] = cur[5]
        c[5][row] = cur[6]
        c[6][row] = cur[7]
        c[7][row] = cur[8]

    def _keep(self, conn, n: int, last: int) -> None:
        """What a connection leaving _open needs to go on: its count and last row."""
        count = self._count
        if len(count) <= conn:
            count.resize_zero(conn + 1)
            self._last.resize_zero(conn + 1)
        count[conn] = n
        self._last[conn] = last

    def _revive(self, conn):
        """The last turn of a connection that slept, back in _open if it may grow."""
        last = self._last
        if type(conn) is not int or not 0 <= conn < len(last) or not last[conn]:
            return None
        row = last[conn] - 1
        last[conn] = 0
        c = self.cols
        cur = [row] + [col[row] for col in c] + [self._count[conn]]
        self._open[conn] = cur
        return cur

    def sleep(self, conn) -> None:
        """Connection ``conn`` went dormant: its live turn leaves memory for its row."""
        cur = self._open.pop(conn, None)
        if cur is not None:
            self._put(cur)
            self._keep(conn, cur[9], cur[0] + 1)

    def close(self) -> None:
        """The end of the run: every live turn to its row."""
        for cur in self._open.values():
            self._put(cur)

    def records(self, unknown) -> Exchanges:
        """The records of the turns of the connections for which ``unknown(conn)`` is
        true, in the order of their request frames (ties: by connection, then as they
        opened), after :meth:`close`."""
        return Exchanges(self, unknown)


class Exchanges:
    """The ``tcp-exchange`` records of a :class:`TurnTable`, made one at a time when
    iterated (every iteration makes them again)."""

    __slots__ = ("table", "unknown")

    def __init__(self, table: TurnTable, unknown):
        self.table = table
        self.unknown = unknown

    def _rows(self):
        t = self.table
        conn, unknown = t.conn, self.unknown
        if t.ordered:
            rows = range(len(conn))
        else:
            frames = t.cols[0]
            rows = sorted(range(len(conn)), key=lambda r: (frames[r], conn[r], r))
        for r in rows:
            if unknown(conn[r]):
                yield r

    def __iter__(self):
        t = self.table
        conn, c = t.conn, t.cols
        for r in self._rows():
            yield {"type": "tcp-exchange", "conn": conn[r], "request_frame": c[0][r],
                   "request_ts": c[1][r], "request_end_ts": c[2][r],
                   "request_bytes": c[3][r], "response_frame": c[4][r],
                   "response_ts": c[5][r], "response_end_ts": c[6][r],
                   "response_bytes": c[7][r]}

    def frames(self):
        """Each record's request frame, in order."""
        frames = self.table.cols[0]
        for r in self._rows():
            yield frames[r]

    def __len__(self) -> int:
        return sum(1 for _ in self._rows())
