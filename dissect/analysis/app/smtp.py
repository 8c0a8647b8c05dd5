"""SMTP (RFC 5321) with ESMTP extensions: PIPELINING, CHUNKING/BDAT (RFC 3030), STARTTLS
(RFC 3207) and AUTH (RFC 4954).

Sans-I/O. :class:`SmtpParser` pairs commands with replies (multi-line ``250-...``), reads the
EHLO extension list, follows the envelope (MAIL FROM, RCPT TO), counts the message bytes sent
after DATA (dot-unstuffed, up to CRLF.CRLF) or in BDAT chunks, keeps AUTH exchanges raw, and
stops at STARTTLS answered 220 (the rest of the connection is TLS).

Records: ``{"type": "smtp", ...}`` per command, ``{"type": "smtp-envelope", ...}`` per mail
transaction, ``{"type": "smtp-starttls", ...}`` when the connection switches to TLS.

How the client stream is read depends on the server's replies (DATA answered 354 or not,
AUTH answered 334 or final, STARTTLS answered 220 or not): after those commands the client's
following bytes are held until the reply arrives, so the records do not depend on the order
in which the two directions' segments are fed.
"""

from __future__ import annotations

import re
from collections import deque

from dissect.analysis.app.base import CLIENT, SERVER, StreamParser, anomaly
from dissect.analysis.app.ftp import TextStream, command_reply_layer, split_command
from dissect.protocols.base import Layer

MAX_LINE = 4096            # RFC 5321 4.5.3.1.4/6: 512 for commands/replies, 1000 for text
                           # lines; real traffic exceeds both, 4 KiB is "clearly not SMTP"
MAX_DATA_LINE = 65536      # message lines are handed out in pieces of this size (no loss)
MAX_HELD_BYTES = 1 << 20   # client bytes held waiting for a reply before assuming the usual
MAX_REPLY_LINES = 1000     # a multi-line reply longer than this is runaway

SMTP_COMMANDS = frozenset(["HELO", "EHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "VRFY", "EXPN", "HELP", "NOOP", "QUIT", "STARTTLS", "AUTH", "TURN", "ETRN", "ATRN", "SEND", "SOML", "SAML", "XCLIENT", "XFORWARD"])

_REPLY = re.compile(rb"^(\d{3})([ -]|$)")
_PATH = re.compile(r"<([^>]*)>")

# (command, reply class) -> client mode after the reply; anything absent -> "command"
MODE_AFTER_REPLY = {
    ("DATA", 3): "data",
    ("AUTH", 3): "auth",
    ("STARTTLS", 2): "tls",
}


def _path(arg: str) -> str:
    m = _PATH.search(arg)
    if m:
        return m.group(1)
    return arg.split(":", 1)[-1].strip().split(" ")[0] if ":" in arg else arg.strip()


class SmtpParser(StreamParser):
    name = "smtp"
    ports = (25, 587, 2525, 465)
    probe_max = 1.0

    @classmethod
    def probe_bound(cls, sport: int, dport: int) -> float:
        return min(1.0, 0.9 + 0.1) if (sport in cls.ports or dport in cls.ports) else 0.9

    @classmethod
    def probe(cls, client_head: bytes, server_head: bytes, sport: int, dport: int) -> float:
        score = 0.0
        if server_head:
            first = server_head.split(b"\n", 1)[0]
            if not _REPLY.match(first):
                return 0.0
            score = 0.4
            up = first.upper()
            if b"SMTP" in up or b"ESMTP" in up or b"MAIL" in up:
                score = 0.85
        if client_head:
            verb, _ = split_command(client_head.split(b"\n", 1)[0].rstrip(b"\r"))
            if verb in ("EHLO", "HELO"):
                score = max(score, 0.9 if server_head else 0.5)
            elif verb in SMTP_COMMANDS and verb not in ("HELP", "NOOP", "QUIT", "AUTH"):
                score = max(score, 0.6 if server_head else 0.4)
        if score and (sport in cls.ports or dport in cls.ports):
            score = min(1.0, score + 0.1)
        return score

    def __init__(self, conn=None, meta=None):
        super().__init__(conn, meta)
        self.streams = [TextStream(MAX_LINE), TextStream(MAX_LINE)]
        self.data_stream_max = MAX_DATA_LINE
        self.pending: deque = deque()
        self.reply = None
        self.mode = "command"       # client: command | data | bdat | auth | tls
        self.waiting = False        # client bytes held until the reply to pending[-1]
        self.bdat_left = 0
        self.bdat_last = False
        self.data_mid_line = False
        self.txn = None
        self.stopped = False
        self.server_spoke = False
        self.replied = False
        self.extensions: list[str] = []

    # -- driving -------------------------------------------------------------------------
    def feed(self, direction: int, data: bytes, frame: int, ts: float) -> list[dict]:
        if self.stopped:
            return []
        if direction == SERVER and data:
            self.server_spoke = True
        self.streams[direction].push(data, frame, ts)
        return self._run()

    def _run(self) -> list[dict]:
        out: list[dict] = []
        progressed = True
        while progressed and not self.stopped:
            progressed = False
            while not self.stopped and (item := self.streams[SERVER].line()) is not None:
                held = self.waiting
                out += self._server_line(*item)
                progressed = True
                if held and not self.waiting:
                    break     # the client's held bytes come next: they may be what this
                              # server's following replies answer
            while not self.stopped and not self._held():
                step = self._client_step()
                if step is None:
                    break
                out += step
                progressed = True
        return out

    def _held(self) -> bool:
        return self.waiting and len(self.streams[CLIENT]) <= MAX_HELD_BYTES

    def _client_step(self):
        s = self.streams[CLIENT]
        if self.mode == "bdat":
            if not len(s):
                return None
            raw, frames, _t0, _t1 = s.take(self.bdat_left)
            self.bdat_left -= len(raw)
            if self.txn is not None:
                self.txn["data_bytes"] = (self.txn["data_bytes"] or 0) + len(raw)
                self._txn_frames(frames)
            if self.bdat_left == 0:
                self.mode = "command"
            return []
        if self.mode == "data":
            s.max_line = self.data_stream_max
            item = s.line(split_long=True)
            s.max_line = MAX_LINE
            if item is None:
                return None
            return self._data_line(*item)
        if self.waiting:      # held too long: assume the usual reply, with an anomaly
            self.waiting = False
            cmd = self.pending[-1]
            cmd["assumed"] = True
            if cmd["command"] == "DATA":
                self.mode = "data"
            out = [anomaly(self.name, "smtp-reply-not-seen", cmd["frames"][0],
                           f"{len(s)} client bytes after {cmd['command']} without a reply; "
                           f"assumed {'354' if self.mode == 'data' else 'a final reply'}",
                           self.conn)]
            return out
        item = s.line()
        if item is None:
            return None
        if self.mode == "auth":
            return self._auth_line(*item)
        return self._command_line(*item)

    # -- client --------------------------------------------------------------------------
    def _command_line(self, line, frames, t0, t1, too_long) -> list[dict]:
        out = []
        if too_long:
            out.append(anomaly(self.name, "smtp-line-too-long", frames[0],
                               f"command line over {MAX_LINE} bytes", self.conn))
        if not line.strip():
            return out
        verb, arg = split_command(line)
        if verb not in SMTP_COMMANDS:
            if not (verb.isascii() and verb.isprintable()):
                out.append(anomaly(self.name, "smtp-binary-line", frames[0],
                                   line[:32].hex(), self.conn))
                verb, arg = None, line[:64].hex()
            else:
                out.append(anomaly(self.name, "smtp-unknown-command", frames[0], verb[:32],
                                   self.conn))
        cmd = {"command": verb, "arg": arg, "frames": list(frames), "request_ts": t0,
               "request_frame": frames[0]}
        self.pending.append(cmd)
        if verb == "MAIL":
            out += self._end_txn(None)
            self.txn = {"mail_from": _path(arg), "rcpt_to": [], "rcpt_accepted": [],
                        "data_bytes": None, "frames": list(frames), "mail_from_reply": None,
                        "data_command": None}
            cmd["txn"] = self.txn
        elif verb == "RCPT":
            if self.txn is None:
                out.append(anomaly(self.name, "smtp-rcpt-without-mail", frames[0], arg[:64],
                                   self.conn))
                self.txn = {"mail_from": None, "rcpt_to": [], "rcpt_accepted": [],
                            "data_bytes": None, "frames": [], "mail_from_reply": None,
                            "data_command": None}
            self.txn["rcpt_to"].append(_path(arg))
            self._txn_frames(frames)
            cmd["txn"] = self.txn
            cmd["rcpt"] = _path(arg)
        elif verb in ("DATA", "STARTTLS", "AUTH"):
            self.waiting = True
            if verb == "DATA" and self.txn is not None:
                cmd["txn"] = self.txn
                self.txn["data_command"] = "DATA"
                self._txn_frames(frames)
            if verb == "AUTH":
                mech, _, initial = arg.partition(" ")
                cmd["auth_mechanism"] = mech.upper()
                cmd["auth_data"] = [initial] if initial else []
        elif verb == "BDAT":
            parts = arg.split()
            try:
                size = int(parts[0])
                if size < 0:
                    raise ValueError
            except (ValueError, IndexError):
                out.append(anomaly(self.name, "smtp-bad-bdat", frames[0], arg[:64], self.conn))
                return out
            last = len(parts) > 1 and parts[1].upper() == "LAST"
            cmd["bdat_size"], cmd["bdat_last"] = size, last
            if self.txn is not None:
                cmd["txn"] = self.txn
                self.txn["data_command"] = "BDAT"
                self.txn["data_bytes"] = self.txn["data_bytes"] or 0
                self._txn_frames(frames)
            if size:
                self.mode, self.bdat_left = "bdat", size
        elif verb in ("RSET", "QUIT", "HELO", "EHLO"):
            out += self._end_txn(None)
        return out

    def _auth_line(self, line, frames, t0, t1, too_long) -> list[dict]:
        cmd = self.pending[-1] if self.pending else None
        if cmd is not None and cmd["command"] == "AUTH":
            cmd["auth_data"].append(line.decode("utf-8", "replace"))
            cmd["frames"] += [f for f in frames if f not in cmd["frames"]]
        self.waiting = True
        return []

    def _data_line(self, line, frames, t0, t1, piece) -> list[dict]:
        txn = self.txn
        if not self.data_mid_line and not piece and line == b".":
            self.mode = "command"
            # the reply to the end of data answers the transaction
            end = {"command": "<end-of-data>", "arg": "", "frames": list(frames),
                   "request_ts": t0, "request_frame": frames[0], "txn": txn}
            self.pending.append(end)
            if txn is not None:
                self._txn_frames(frames)
            return []
        n = len(line)
        if not self.data_mid_line and line.startswith(b"."):
            n -= 1           # dot-unstuffing (RFC 5321 4.5.2)
        if not piece:
            n += 2           # the line's CRLF is part of the message
        self.data_mid_line = piece
        if txn is not None:
            txn["data_bytes"] = (txn["data_bytes"] or 0) + n
            self._txn_frames(frames)
        return []

    def _txn_frames(self, frames):
        if self.txn is not None:
            fr = self.txn["frames"]
            fr += [f for f in frames if f not in fr]

    # -- server --------------------------------------------------------------------------
    def _server_line(self, line, frames, t0, t1, too_long) -> list[dict]:
        out = []
        if too_long:
            out.append(anomaly(self.name, "smtp-line-too-long", frames[0],
                               f"reply line over {MAX_LINE} bytes", self.conn))
        m = _REPLY.match(line)
        if self.reply is not None:
            r = self.reply
            if not m or m.group(1) != r["code"]:
                out.append(anomaly(self.name, "smtp-bad-continuation", frames[0],
                                   line[:64].decode("latin-1"), self.conn))
            r["lines"].append(line[4:] if m else line)
            r["frames"] += [f for f in frames if f not in r["frames"]]
            if (m and m.group(2) != b"-") or len(r["lines"]) > MAX_REPLY_LINES:
                self.reply = None
                out += self._reply_done(r)
            return out
        if not m:
            if line.strip():
                out.append(anomaly(self.name, "smtp-bad-reply-line", frames[0],
                                   line[:64].decode("latin-1"), self.conn))
            return out
        r = {"code": m.group(1), "lines": [line[4:]], "frames": list(frames), "ts": t0}
        if m.group(2) == b"-":
            self.reply = r
            return out
        return out + self._reply_done(r)

    def _reply_done(self, r) -> list[dict]:
        code = int(r["code"])
        lines = [ln.decode("utf-8", "replace") for ln in r["lines"]]
        out: list[dict] = []
        first_reply = not self.replied
        self.replied = True
        # the greeting (220, or 554 "no service") answers no command, even when the client
        # spoke first and its command is already pending
        greeting = first_reply and code in (220, 421, 554)
        cmd = self.pending[0] if self.pending and not greeting else None
        verb = cmd["command"] if cmd else None
        if verb == "AUTH" and code // 100 == 3:        # a 334 challenge: not the final reply
            cmd.setdefault("challenges", []).append(lines[0] if lines else "")
            cmd["frames"] += [f for f in r["frames"] if f not in cmd["frames"]]
            if cmd is self.pending[-1]:
                self.mode, self.waiting = "auth", False
            return out
        if cmd is not None:
            self.pending.popleft()
        rec = {"type": "smtp", "conn": self.conn,
               "command": verb, "arg": cmd["arg"] if cmd else None,
               "reply_code": code, "reply_text": "\n".join(lines),
               "request_ts": cmd["request_ts"] if cmd else None, "reply_ts": r["ts"],
               "response_time_s": round(r["ts"] - cmd["request_ts"], 6)
               if cmd and cmd["request_ts"] is not None else None,
               "request_frame": cmd["request_frame"] if cmd else None,
               "reply_frame": r["frames"][0]}
        rec["frames"] = (cmd["frames"] if cmd else []) + [
            f for f in r["frames"] if not cmd or f not in cmd["frames"]]
        if verb == "EHLO" and code == 250:
            self.extensions = [ln.strip() for ln in lines[1:]]
            rec["extensions"] = self.extensions
        if verb == "AUTH":
            rec["auth_mechanism"] = cmd["auth_mechanism"]
            rec["auth_data"] = cmd["auth_data"]
            rec["auth_challenges"] = cmd.get("challenges", [])
        if cmd is not None and cmd.get("assumed"):
            rec["reply_assumed_late"] = True
        if verb != "<end-of-data>":
            out.append(rec)
        txn = cmd.get("txn") if cmd else None
        if txn is not None:
            if verb == "MAIL":
                txn["mail_from_reply"] = code
            elif verb == "RCPT" and code // 100 == 2:
                txn["rcpt_accepted"].append(cmd["rcpt"])
            elif verb == "<end-of-data>" or (verb == "BDAT" and cmd.get("bdat_last")) or verb in ("DATA", "BDAT") and code // 100 in (4, 5):
                out += self._end_txn(code, txn, r["ts"], cmd)
        if cmd is not None and cmd is self.pending_last_or(cmd) and self.waiting \
                and verb in ("DATA", "STARTTLS", "AUTH"):
            self.waiting = False
            self.mode = MODE_AFTER_REPLY.get((verb, code // 100), "command")
            if self.mode == "tls":
                self.stopped = True
                rec["tls"] = True
                out.append({"type": "smtp-starttls", "conn": self.conn, "frames": rec["frames"],
                            "extensions": self.extensions,
                            "detail": "STARTTLS answered 220: the rest of the connection is TLS"})
        elif verb == "AUTH" and self.mode == "auth":
            self.mode = "command"
            self.waiting = False
        return out

    def pending_last_or(self, cmd):
        """The command the client's held bytes wait on: the last one sent (or ``cmd``)."""
        return self.pending[-1] if self.pending else cmd

    def _end_txn(self, code, txn=None, ts=None, cmd=None) -> list[dict]:
        txn = txn or self.txn
        if txn is None:
            return []
        if txn is self.txn:
            self.txn = None
        if txn.get("done"):
            return []
        txn["done"] = True
        return [{"type": "smtp-envelope", "conn": self.conn, "frames": sorted(txn["frames"]),
                 "mail_from": txn["mail_from"], "mail_from_reply": txn["mail_from_reply"],
                 "rcpt_to": txn["rcpt_to"], "rcpt_accepted": txn["rcpt_accepted"],
                 "data_command": txn["data_command"], "data_bytes": txn["data_bytes"],
                 "reply_code": code, "reply_ts": ts}]

    # -- end -----------------------------------------------------------------------------
    def gap(self, direction, size, frame, ts):
        s = self.streams[direction]
        s.take(len(s))
        out = [anomaly(self.name, "stream-gap", frame, f"{size} bytes missing", self.conn)]
        if direction == CLIENT and self.mode == "bdat":
            take = min(size, self.bdat_left)
            self.bdat_left -= take
            if self.bdat_left == 0:
                self.mode = "command"
        elif direction == CLIENT and self.mode != "data":
            s.skipping = True
        elif direction == SERVER:
            s.skipping = True
            self.reply = None
        return out

    def close(self, ts=None) -> list[dict]:
        out: list[dict] = []
        if self.stopped:
            return out
        if self.waiting and not self.server_spoke:
            # one-sided capture: read the held client bytes as the usual reply would allow
            self.waiting = False
            if self.pending and self.pending[-1]["command"] == "DATA":
                self.mode = "data"
            out += self._run()
        if self.reply is not None:
            r, self.reply = self.reply, None
            out += self._reply_done(r)
        while self.pending:
            cmd = self.pending.popleft()
            if cmd["command"] == "<end-of-data>":
                continue
            out.append({"type": "smtp", "conn": self.conn, "frames": cmd["frames"],
                        "command": cmd["command"], "arg": cmd["arg"], "reply_code": None,
                        "reply_text": None, "request_ts": cmd["request_ts"], "reply_ts": None,
                        "response_time_s": None, "request_frame": cmd["request_frame"],
                        "reply_frame": None})
        out += self._end_txn(None)
        return out


def dissect_payload(data: bytes, offset: int) -> list[Layer]:
    """SMTP command or reply lines starting in one segment (frame offsets); [] if not SMTP."""
    return command_reply_layer(data, offset, "smtp", SMTP_COMMANDS, _REPLY,
                               code="smtp.response.code", reply_arg="smtp.rsp.parameter",
                               command="smtp.req.command", command_arg="smtp.req.parameter",
                               ref="RFC 5321 4.2")


PARSERS = [SmtpParser]
