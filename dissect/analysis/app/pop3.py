"""POP3 (RFC 1939), with CAPA/STLS (RFC 2449, 2595) and AUTH (RFC 5034).

Sans-I/O. :class:`Pop3Parser` pairs each command with its ``+OK``/``-ERR`` status line and,
for the commands whose positive answer is multi-line (LIST and UIDL without argument, RETR,
TOP, CAPA, AUTH without argument), reads the data lines up to the terminating ``.``,
counting lines and dot-unstuffed bytes. USER/PASS/APOP values are kept as sent. STLS answered
``+OK`` ends parsing (the rest is TLS). AUTH exchanges (``+ challenge`` / client line) are kept
raw.

Record: ``{"type": "pop3", "command", "arg", "status", "status_text", "lines", "bytes",
"request_ts", "reply_ts", "response_time_s", "frames", ...}``.
"""

from __future__ import annotations

from collections import deque

from dissect.analysis.app.base import CLIENT, SERVER, StreamParser, anomaly
from dissect.analysis.app.ftp import TextStream, _lines_with_offsets, split_command
from dissect.protocols.base import Layer

MAX_LINE = 4096          # RFC 1939: responses up to 512 octets; 4 KiB is "clearly not POP3"
MAX_DATA_LINE = 65536    # message lines are handed out in pieces of this size (no loss)
MAX_HELD_BYTES = 65536   # client bytes held waiting for the answer to STLS/AUTH

POP3_COMMANDS = frozenset(["USER", "PASS", "APOP", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "QUIT", "TOP", "UIDL", "CAPA", "STLS", "AUTH", "UTF8", "LANG", "XTND"])


def multiline(command: str, arg: str) -> bool:
    """Whether a positive answer to this command is multi-line (RFC 1939 section 5, 2449)."""
    if command in ("RETR", "TOP", "CAPA"):
        return True
    if command in ("LIST", "UIDL", "AUTH"):
        return not arg.strip()
    return False


class Pop3Parser(StreamParser):
    name = "pop3"
    ports = (110,)
    probe_max = 1.0

    @classmethod
    def probe_bound(cls, sport: int, dport: int) -> float:
        return min(1.0, 0.8 + 0.1) if 110 in (sport, dport) else 0.8

    @classmethod
    def probe(cls, client_head: bytes, server_head: bytes, sport: int, dport: int) -> float:
        score = 0.0
        if server_head:
            if not server_head.startswith((b"+OK", b"-ERR")):
                return 0.0
            score = 0.8 if b"POP" in server_head.split(b"\n", 1)[0].upper() else 0.6
        if client_head:
            verb, _ = split_command(client_head.split(b"\n", 1)[0].rstrip(b"\r"))
            if verb in ("CAPA", "STLS", "APOP", "STAT", "UIDL"):
                score = max(score, 0.6)
            elif verb in ("USER", "AUTH") and score:
                score = max(score, 0.7)
        if score and 110 in (sport, dport):
            score = min(1.0, score + 0.1)
        return score

    def __init__(self, conn=None, meta=None):
        super().__init__(conn, meta)
        self.streams = [TextStream(MAX_LINE), TextStream(MAX_LINE)]
        self.pending: deque = deque()
        self.data = None            # multi-line response being read
        self.mid_line = False
        self.waiting = False        # client bytes held until the answer to STLS/AUTH
        self.auth = False           # client lines are AUTH responses
        self.stopped = False
        self.replied = False

    def feed(self, direction, data, frame, ts):
        if self.stopped:
            return []
        self.streams[direction].push(data, frame, ts)
        return self._run()

    def _run(self):
        out = []
        progressed = True
        while progressed and not self.stopped:
            progressed = False
            while not self.stopped:
                s = self.streams[SERVER]
                if self.data is not None:
                    s.max_line = MAX_DATA_LINE
                    item = s.line(split_long=True)
                    s.max_line = MAX_LINE
                else:
                    item = s.line()
                if item is None:
                    break
                held = self.waiting
                out += self._server_line(*item)
                progressed = True
                if held and not self.waiting:
                    break     # read the client's held bytes before the next reply
            while not self.stopped and not (self.waiting and
                                            len(self.streams[CLIENT]) <= MAX_HELD_BYTES):
                item = self.streams[CLIENT].line()
                if item is None:
                    break
                self.waiting = False
                out += self._client_line(*item)
                progressed = True
        return out

    def _client_line(self, line, frames, t0, t1, too_long):
        out = []
        if too_long:
            out.append(anomaly(self.name, "pop3-line-too-long", frames[0],
                               f"command line over {MAX_LINE} bytes", self.conn))
        if self.auth and self.pending and self.pending[-1]["command"] == "AUTH":
            cmd = self.pending[-1]
            cmd["auth_data"].append(line.decode("utf-8", "replace"))
            cmd["frames"] += [f for f in frames if f not in cmd["frames"]]
            self.waiting = True
            return out
        if not line.strip():
            return out
        verb, arg = split_command(line)
        if verb not in POP3_COMMANDS:
            if not (verb.isascii() and verb.isprintable()):
                out.append(anomaly(self.name, "pop3-binary-line", frames[0], line[:32].hex(),
                                   self.conn))
                verb, arg = None, line[:64].hex()
            else:
                out.append(anomaly(self.name, "pop3-unknown-command", frames[0], verb[:32],
                                   self.conn))
        cmd = {"command": verb, "arg": arg, "frames": list(frames), "request_ts": t0,
               "request_frame": frames[0]}
        if verb == "AUTH":
            mech, _, initial = arg.partition(" ")
            cmd["auth_mechanism"] = mech.upper()
            cmd["auth_data"] = [initial] if initial else []
        self.pending.append(cmd)
        if verb in ("STLS",) or (verb == "AUTH" and arg.strip()):
            self.waiting = True
        return out

    def _server_line(self, line, frames, t0, t1, piece):
        if self.data is not None:
            d = self.data
            d["frames"] += [f for f in frames if f not in d["frames"]]
            if not self.mid_line and not piece and line == b".":
                self.data = None
                return [self._record(d)]
            n = len(line) - (1 if not self.mid_line and line.startswith(b".") else 0)
            if not piece:
                d["lines"] += 1
                n += 2
            d["bytes"] += n
            self.mid_line = piece
            return []
        out = []
        if piece:
            out.append(anomaly(self.name, "pop3-line-too-long", frames[0],
                               f"status line over {MAX_LINE} bytes", self.conn))
        greeting = not self.replied
        self.replied = True
        if line.startswith(b"+ ") or line == b"+":
            cmd = self.pending[0] if self.pending else None
            if cmd is not None and cmd["command"] == "AUTH":
                cmd.setdefault("challenges", []).append(line[2:].decode("utf-8", "replace"))
                cmd["frames"] += [f for f in frames if f not in cmd["frames"]]
                self.auth, self.waiting = True, False
                return out
        if line.startswith(b"+OK"):
            status, text = "+OK", line[4:]
        elif line.startswith(b"-ERR"):
            status, text = "-ERR", line[5:]
        else:
            if line.strip():
                out.append(anomaly(self.name, "pop3-bad-status-line", frames[0],
                                   line[:64].decode("latin-1"), self.conn))
            return out
        cmd = self.pending.popleft() if self.pending and not greeting else None
        d = {"cmd": cmd, "status": status, "text": text.decode("utf-8", "replace"),
             "frames": (cmd["frames"] if cmd else []) + [f for f in frames
                                                        if not cmd or f not in cmd["frames"]],
             "ts": t0, "reply_frame": frames[0], "lines": 0, "bytes": 0}
        if cmd and cmd["command"] == "AUTH":
            self.auth = False
        if cmd and self.waiting and not self.pending:
            self.waiting = False
        if cmd and status == "+OK" and multiline(cmd["command"] or "", cmd["arg"] or ""):
            self.data, self.mid_line = d, False
            return out
        out.append(self._record(d))
        if cmd and cmd["command"] == "STLS" and status == "+OK":
            self.stopped = True
            out[-1]["tls"] = True
        return out

    def _record(self, d):
        cmd = d["cmd"]
        multi = bool(cmd and d["status"] == "+OK" and
                     multiline(cmd["command"] or "", cmd["arg"] or ""))
        rec = {"type": "pop3", "conn": self.conn, "frames": d["frames"],
               "command": cmd["command"] if cmd else None, "arg": cmd["arg"] if cmd else None,
               "status": d["status"], "status_text": d["text"],
               "lines": d["lines"] if multi else None, "bytes": d["bytes"] if multi else None,
               "request_ts": cmd["request_ts"] if cmd else None, "reply_ts": d["ts"],
               "response_time_s": round(d["ts"] - cmd["request_ts"], 6) if cmd else None,
               "request_frame": cmd["request_frame"] if cmd else None,
               "reply_frame": d["reply_frame"]}
        if cmd and cmd["command"] == "AUTH":
            rec["auth_mechanism"] = cmd["auth_mechanism"]
            rec["auth_data"] = cmd["auth_data"]
            rec["auth_challenges"] = cmd.get("challenges", [])
        return rec

    def gap(self, direction, size, frame, ts):
        s = self.streams[direction]
        s.take(len(s))
        if direction == SERVER and self.data is not None:
            self.data["bytes"] += size        # lost inside a message: still its bytes
            self.data["gap"] = True
        else:
            s.skipping = True
        return [anomaly(self.name, "stream-gap", frame, f"{size} bytes missing", self.conn)]

    def close(self, ts=None):
        out = []
        if self.stopped:
            return out
        if self.data is not None:
            d, self.data = self.data, None
            out.append(anomaly(self.name, "pop3-response-incomplete", d["reply_frame"],
                               "multi-line response without its terminating '.'", self.conn))
            out.append(self._record(d))
        while self.pending:
            cmd = self.pending.popleft()
            out.append({"type": "pop3", "conn": self.conn, "frames": cmd["frames"],
                        "command": cmd["command"], "arg": cmd["arg"], "status": None,
                        "status_text": None, "lines": None, "bytes": None,
                        "request_ts": cmd["request_ts"], "reply_ts": None,
                        "response_time_s": None, "request_frame": cmd["request_frame"],
                        "reply_frame": None})
        return out


def dissect_payload(data: bytes, offset: int) -> list[Layer]:
    """POP3 command or status line(s) starting in one segment (frame offsets); [] if not POP3."""
    lines = _lines_with_offsets(data)
    if not lines:
        return []
    first = lines[0][1]
    verb, _ = split_command(first)
    is_status = first.startswith((b"+OK", b"-ERR"))
    if not is_status and verb not in POP3_COMMANDS:
        return []
    layer = Layer("pop3", offset, len(data))
    start, line = lines[0]
    if is_status:
        ind = b"+OK" if line.startswith(b"+OK") else b"-ERR"
        layer.add("pop.response.indicator", ind.decode(), offset + start, len(ind),
                  "status indicator (RFC 1939 3)")
        if len(line) > len(ind) + 1:
            layer.add("pop.response.description", line[len(ind) + 1:].decode("utf-8", "replace"),
                      offset + start + len(ind) + 1, len(line) - len(ind) - 1)
        if len(lines) > 1:
            body = lines[1][0]
            layer.add("pop.data", len(data) - body, offset + body, len(data) - body,
                      "multi-line response data in this segment (bytes)")
        return [layer]
    for start, line in lines:
        verb, arg = split_command(line)
        layer.add("pop.request.command", verb, offset + start, len(verb), "command")
        if arg:
            layer.add("pop.request.parameter", arg, offset + start + len(verb) + 1,
                      len(line) - len(verb) - 1)
    return [layer]


PARSERS = [Pop3Parser]
