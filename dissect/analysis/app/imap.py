"""IMAP4rev1/rev2 (RFC 3501, 9051): tagged commands, their tagged completion, literals.

Sans-I/O. :class:`ImapParser` reads both directions as logical lines: a line ending in a
literal announcement ``{N}`` or ``{N+}`` (RFC 7888) continues after exactly N bytes, which are
counted and never scanned for CRLF. Each tagged command is paired with the tagged completion
carrying the same tag (``OK``/``NO``/``BAD``); untagged responses (``* ...``) received while it
was outstanding are counted on the oldest outstanding command. LOGIN arguments and
AUTHENTICATE exchanges are kept raw. STARTTLS completed ``OK`` ends parsing (the rest is TLS).
IDLE ends with the client's ``DONE``.

Records: ``{"type": "imap", "tag", "command", "arg", "status", "status_text", "untagged",
"literal_bytes", "request_ts", "reply_ts", "response_time_s", "frames", ...}`` per command
(``command`` None for a completion whose command was not captured), and one
``{"type": "imap-session", "greeting", "untagged_unsolicited", ...}`` at close.
"""

from __future__ import annotations

import re

from dissect.analysis.app.base import CLIENT, SERVER, StreamParser, anomaly
from dissect.analysis.app.ftp import TextStream, _lines_with_offsets
from dissect.protocols.base import Layer

MAX_LINE = 65536          # RFC 9051 has no line limit; servers cap near 8-64 KiB
MAX_LITERAL = 1 << 30     # a literal announced above 1 GiB is not believed (anomaly, resync)
MAX_HELD_BYTES = 65536    # client bytes held waiting for the answer to STARTTLS/AUTHENTICATE
MAX_PENDING = 10000       # outstanding tags kept before the oldest are dropped (anomaly)

_LITERAL = re.compile(rb"\{(\d{1,12})(\+|-)?\}$")

IMAP_COMMANDS = frozenset(["CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "AUTHENTICATE", "LOGIN", "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB", "NAMESPACE", "STATUS", "APPEND", "IDLE", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "UID", "ENABLE", "ID", "GETQUOTA", "GETQUOTAROOT", "SETQUOTA", "GETACL", "SETACL", "DELETEACL", "LISTRIGHTS", "MYRIGHTS", "COMPRESS", "GETMETADATA", "SETMETADATA", "XLIST", "ESEARCH", "SORT", "THREAD"])

# a server's first line that is a tagged status reply (probe), and a command tag
_TAGGED_STATUS = re.compile(rb"^[A-Za-z0-9.]+ (OK|NO|BAD) ")
_TAG = re.compile(rb"^[A-Za-z0-9._-]{1,32}$")


class _LogicalLines:
    """Logical IMAP lines of one direction: text with literals spliced out and counted."""

    def __init__(self):
        self.stream = TextStream(MAX_LINE)
        self.parts: list[bytes] = []
        self.frames: list[int] = []
        self.t0 = None
        self.lit_left = 0
        self.lit_bytes = 0

    def next(self):
        """``(text, literal_bytes, frames, t0, anomalies)`` or None when more bytes are needed."""
        s = self.stream
        notes = []
        while True:
            if self.lit_left:
                if not len(s):
                    return None
                _raw, frames, t0, _t1 = s.take(self.lit_left)
                self.lit_left -= len(_raw)
                self.lit_bytes += len(_raw)
                self._frames(frames, t0)
                if self.lit_left:
                    return None
                continue
            item = s.line()
            if item is None:
                return None
            line, frames, t0, _t1, too_long = item
            if too_long:
                notes.append("imap-line-too-long")
            self._frames(frames, t0)
            self.parts.append(line)
            m = _LITERAL.search(line)
            if m:
                n = int(m.group(1))
                if n > MAX_LITERAL:
                    notes.append("imap-literal-too-large")
                else:
                    self.lit_left = n
                    self.parts[-1] = line[: m.start()] + b"{%d}" % n
                    continue
            text = b"".join(self.parts)      # the text after a literal starts with its SP
            out = (text, self.lit_bytes, self.frames, self.t0, notes)
            self.parts, self.frames, self.t0, self.lit_bytes = [], [], None, 0
            return out

    def _frames(self, frames, t0):
        if self.t0 is None:
            self.t0 = t0
        self.frames += [f for f in frames if f not in self.frames]


class ImapParser(StreamParser):
    name = "imap"
    ports = (143,)
    probe_max = 1.0

    @classmethod
    def probe_bound(cls, sport: int, dport: int) -> float:
        return min(1.0, 0.9 + 0.1) if 143 in (sport, dport) else 0.9

    @classmethod
    def probe(cls, client_head: bytes, server_head: bytes, sport: int, dport: int) -> float:
        score = 0.0
        if server_head:
            first = server_head.split(b"\n", 1)[0].upper()
            if first.startswith((b"* OK", b"* PREAUTH", b"* BYE")):
                score = 0.9 if b"IMAP" in first else 0.7
            elif _TAGGED_STATUS.match(first) or first.startswith(b"* "):
                score = 0.5
            else:
                return 0.0
        if client_head:
            parts = client_head.split(b"\n", 1)[0].split(b" ")
            if len(parts) >= 2 and parts[1].rstrip(b"\r").upper().decode("latin-1") in IMAP_COMMANDS:
                score = max(score, 0.7)
        if score and 143 in (sport, dport):
            score = min(1.0, score + 0.1)
        return score

    def __init__(self, conn=None, meta=None):
        super().__init__(conn, meta)
        self.lines = [_LogicalLines(), _LogicalLines()]
        self.pending: dict[str, dict] = {}      # tag -> command, in the order sent
        self.waiting = False
        self.auth_tag = None
        self.idle_tag = None
        self.stopped = False
        self.greeting = None
        self.unsolicited = 0
        self.session_frames: list[int] = []

    def feed(self, direction, data, frame, ts):
        if self.stopped:
            return []
        self.lines[direction].stream.push(data, frame, ts)
        return self._run()

    def _run(self):
        out = []
        progressed = True
        while progressed and not self.stopped:
            progressed = False
            while not self.stopped and (item := self.lines[SERVER].next()) is not None:
                held = self.waiting
                out += self._server(*item)
                progressed = True
                if held and not self.waiting:
                    break     # read the client's held bytes before the next response
            while not self.stopped and not (self.waiting and
                                            len(self.lines[CLIENT].stream) <= MAX_HELD_BYTES):
                item = self.lines[CLIENT].next()
                if item is None:
                    break
                self.waiting = False
                out += self._client(*item)
                progressed = True
        return out

    def _notes(self, notes, frame):
        return [anomaly(self.name, n, frame, "", self.conn) for n in notes]

    def _client(self, text, lit, frames, t0, notes):
        out = self._notes(notes, frames[0])
        if self.auth_tag is not None and self.auth_tag in self.pending:
            cmd = self.pending[self.auth_tag]
            cmd["auth_data"].append(text.decode("utf-8", "replace"))
            cmd["frames"] += [f for f in frames if f not in cmd["frames"]]
            self.waiting = True
            return out
        if self.idle_tag is not None and text.strip().upper() == b"DONE":
            cmd = self.pending.get(self.idle_tag)
            if cmd is not None:
                cmd["frames"] += [f for f in frames if f not in cmd["frames"]]
            self.idle_tag = None
            return out
        if not text.strip():
            return out
        parts = text.decode("utf-8", "replace").split(" ", 2)
        if len(parts) < 2:
            return out + [anomaly(self.name, "imap-bad-command-line", frames[0],
                                  text[:64].decode("latin-1"), self.conn)]
        tag, verb = parts[0], parts[1].upper()
        arg = parts[2] if len(parts) > 2 else ""
        if verb == "UID" and arg:
            sub, _, rest = arg.partition(" ")
            verb, arg = f"UID {sub.upper()}", rest
        if verb.split(" ")[-1] not in IMAP_COMMANDS:
            out.append(anomaly(self.name, "imap-unknown-command", frames[0], verb[:32], self.conn))
        if tag in self.pending:
            out.append(anomaly(self.name, "imap-duplicate-tag", frames[0], tag[:32], self.conn))
            out += self._complete(self.pending.pop(tag), None, "", frames, t0)
        if len(self.pending) >= MAX_PENDING:
            oldest = next(iter(self.pending))
            out.append(anomaly(self.name, "imap-too-many-outstanding", frames[0], oldest,
                               self.conn))
            out += self._complete(self.pending.pop(oldest), None, "", [], None)
        cmd = {"tag": tag, "command": verb, "arg": arg, "frames": list(frames),
               "request_ts": t0, "request_frame": frames[0], "untagged": 0,
               "literal_bytes": lit, "continuations": 0}
        self.pending[tag] = cmd
        if verb == "AUTHENTICATE":
            cmd["auth_data"] = []
            self.auth_tag = tag
            self.waiting = True
        elif verb == "STARTTLS":
            self.waiting = True
        elif verb == "IDLE":
            self.idle_tag = tag
        return out

    def _server(self, text, lit, frames, t0, notes):
        out = self._notes(notes, frames[0])
        if text.startswith(b"* ") or text == b"*":
            if self.greeting is None and not self.pending and self.unsolicited == 0:
                self.greeting = text[2:].decode("utf-8", "replace")
                self.session_frames += frames
                return out
            if self.pending:
                cmd = next(iter(self.pending.values()))
                cmd["untagged"] += 1
                cmd["literal_bytes"] += lit
                cmd["frames"] += [f for f in frames if f not in cmd["frames"]]
            else:
                self.unsolicited += 1
                self.session_frames += [f for f in frames if f not in self.session_frames]
            return out
        if text.startswith(b"+"):
            if self.auth_tag is not None and self.auth_tag in self.pending:
                cmd = self.pending[self.auth_tag]
                cmd.setdefault("challenges", []).append(text[2:].decode("utf-8", "replace"))
                cmd["frames"] += [f for f in frames if f not in cmd["frames"]]
                self.waiting = False
            elif self.pending:
                cmd = list(self.pending.values())[-1]
                cmd["continuations"] += 1
            return out
        parts = text.decode("utf-8", "replace").split(" ", 2)
        if len(parts) < 2 or parts[1].upper() not in ("OK", "NO", "BAD"):
            if text.strip():
                out.append(anomaly(self.name, "imap-bad-response-line", frames[0],
                                   text[:64].decode("latin-1"), self.conn))
            return out
        tag, status = parts[0], parts[1].upper()
        status_text = parts[2] if len(parts) > 2 else ""
        cmd = self.pending.pop(tag, None)
        if cmd is None:
            out.append(anomaly(self.name, "imap-unmatched-tag", frames[0], tag[:32], self.conn))
            cmd = {"tag": tag, "command": None, "arg": None, "frames": [], "request_ts": None,
                   "request_frame": None, "untagged": 0, "literal_bytes": 0, "continuations": 0}
        out += self._complete(cmd, status, status_text, frames, t0)
        if tag == self.auth_tag:
            self.auth_tag = None
            self.waiting = False
        if tag == self.idle_tag:
            self.idle_tag = None
        if cmd["command"] == "STARTTLS":
            self.waiting = False
            if status == "OK":
                self.stopped = True
                out[-1]["tls"] = True
        return out

    def _complete(self, cmd, status, status_text, frames, ts):
        rec = {"type": "imap", "conn": self.conn, "tag": cmd["tag"], "command": cmd["command"],
               "arg": cmd["arg"], "status": status, "status_text": status_text,
               "untagged": cmd["untagged"], "literal_bytes": cmd["literal_bytes"],
               "request_ts": cmd["request_ts"], "reply_ts": ts,
               "response_time_s": round(ts - cmd["request_ts"], 6)
               if ts is not None and cmd["request_ts"] is not None else None,
               "request_frame": cmd["request_frame"], "reply_frame": frames[0] if frames else None,
               "frames": cmd["frames"] + [f for f in frames if f not in cmd["frames"]]}
        if "auth_data" in cmd:
            rec["auth_data"] = cmd["auth_data"]
            rec["auth_challenges"] = cmd.get("challenges", [])
        return [rec]

    def gap(self, direction, size, frame, ts):
        ll = self.lines[direction]
        if ll.lit_left:
            take = min(size, ll.lit_left)
            ll.lit_left -= take
            ll.lit_bytes += take
        else:
            ll.stream.take(len(ll.stream))
            ll.stream.skipping = True
            ll.parts, ll.frames, ll.t0 = [], [], None
        return [anomaly(self.name, "stream-gap", frame, f"{size} bytes missing", self.conn)]

    def close(self, ts=None):
        out = []
        if not self.stopped:
            for cmd in list(self.pending.values()):
                out += self._complete(cmd, None, "", [], None)
            self.pending.clear()
        out.append({"type": "imap-session", "conn": self.conn, "frames": self.session_frames,
                    "greeting": self.greeting, "untagged_unsolicited": self.unsolicited,
                    "tls": self.stopped})
        return out


def dissect_payload(data: bytes, offset: int) -> list[Layer]:
    """IMAP lines starting in one segment (frame offsets); [] if not IMAP."""
    lines = _lines_with_offsets(data)
    if not lines:
        return []
    first = lines[0][1]
    parts = first.split(b" ", 2)
    if len(parts) < 2:
        return []
    word = parts[1].upper().decode("latin-1")
    untagged = parts[0] in (b"*", b"+")
    if not untagged and word not in IMAP_COMMANDS and word not in ("OK", "NO", "BAD"):
        return []
    if not untagged and not _TAG.match(parts[0]):
        return []
    layer = Layer("imap", offset, len(data))
    for start, line in lines:
        parts = line.split(b" ", 2)
        layer.add("imap.line", line.decode("utf-8", "replace"), offset + start, len(line))
        if len(parts) >= 2 and parts[0] not in (b"*", b"+"):
            layer.add("imap.tag", parts[0].decode("latin-1"), offset + start, len(parts[0]))
            word = parts[1].upper().decode("latin-1")
            name = "imap.response.status" if word in ("OK", "NO", "BAD") else "imap.request.command"
            layer.add(name, word, offset + start + len(parts[0]) + 1, len(parts[1]))
    return [layer]


PARSERS = [ImapParser]
