"""FTP control connections (RFC 959, 2428 EPRT/EPSV, 4217 AUTH TLS) and data-connection linkage.

Sans-I/O. :class:`FtpParser` takes the two reassembled byte streams of one control connection
and returns:

* ``{"type": "ftp", ...}`` per command, paired with its final reply (preliminary 1xx replies
  such as 150/125 are kept in ``interim``). Replies that answer no command (the 220 greeting,
  unsolicited 421) have ``command`` None.
* ``{"type": "ftp-expect", ...}`` when a data connection is announced: PORT/EPRT (active: the
  client listens) or a 227/229 reply to PASV/EPSV (passive: the server listens).

:func:`link_ftp_data` (also as :class:`FtpDataLinker`) then links the TCP connections seen to
those expectations and to the transfer command that used each one, and summarises each
control session.

USER/PASS values are kept as sent (masking is a later, separate concern).

:class:`TextStream` - a byte queue that hands out lines or counted byte runs together with the
frames they came from - is shared by the other line-oriented parsers (smtp, pop3, imap).
"""

from __future__ import annotations

import ipaddress
import re
from collections import deque

from dissect.analysis.app.base import CLIENT, SERVER, StreamParser, anomaly
from dissect.protocols.base import Layer

MAX_LINE = 8192            # a control line longer than this is not FTP; RFC 959 has no limit,
                           # real servers cap at 512-4096, so 8 KiB leaves room for long paths
MAX_REPLY_LINES = 1000     # a multi-line reply (FEAT, HELP, STAT) longer than this is runaway
MAX_HELD_BYTES = 65536     # client bytes held while waiting for the reply to AUTH TLS

# commands (RFC 959, 2228, 2389, 2428, 3659, 4217, 7151 and common extensions)
FTP_COMMANDS = frozenset(["ABOR", "ACCT", "ADAT", "ALLO", "APPE", "AUTH", "CCC", "CDUP", "CONF", "CWD", "DELE", "ENC", "EPRT", "EPSV", "FEAT", "HELP", "HOST", "LANG", "LIST", "LPRT", "LPSV", "MDTM", "MIC", "MKD", "MLSD", "MLST", "MODE", "NLST", "NOOP", "OPTS", "PASS", "PASV", "PBSZ", "PORT", "PROT", "PWD", "QUIT", "REIN", "REST", "RETR", "RMD", "RNFR", "RNTO", "SITE", "SIZE", "SMNT", "STAT", "STOR", "STOU", "STRU", "SYST", "TYPE", "USER", "XCUP", "XMKD", "XPWD", "XRCP", "XRMD", "XRSQ", "XSEM", "XSEN", "XCWD", "CLNT", "MFMT", "MFCT", "MFF", "OPTS", "AVBL", "CSID", "DSIZ", "HASH", "RMDA", "SPSV", "THMB"])

# transfer command -> direction of the data (relative to the FTP client)
TRANSFER_COMMANDS = {"LIST": "download", "NLST": "download", "MLSD": "download",
                     "RETR": "download", "STOR": "upload", "STOU": "upload", "APPE": "upload"}

_REPLY = re.compile(rb"^(\d{3})([ -]|$)")
_SIX = re.compile(rb"(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})"
                  rb"\s*,\s*(\d{1,3})")
_EPSV = re.compile(rb"\((.)\1\1(\d{1,5})\1\)")


class TextStream:
    """One direction's bytes, handed out as lines or counted runs, each with its frames.

    ``frames`` of a piece are the frames that delivered any of its bytes, so the result does
    not depend on how the bytes were cut into segments.
    """

    def __init__(self, max_line: int = MAX_LINE):
        self.buf = bytearray()
        # (where the piece ends, frame, ts) in order; offsets count every byte pushed,
        # and base is the offset of buf[0] (what was taken is dropped from the left)
        self.marks: deque = deque()
        self.base = 0
        self.max_line = max_line
        self.skipping = False         # discarding the rest of an over-long line

    def push(self, data: bytes, frame: int, ts: float) -> None:
        if data:
            self.buf += data
            self.marks.append((self.base + len(self.buf), frame, ts))

    def pieces(self) -> list[tuple[bytes, int, float]]:
        """What is buffered, as the (bytes, frame, ts) pieces that delivered it."""
        out = []
        prev = self.base
        for end, frame, ts in self.marks:
            if end > prev:
                out.append((bytes(self.buf[prev - self.base:end - self.base]), frame, ts))
            prev = end
        return out

    def __len__(self) -> int:
        return len(self.buf)

    def take(self, n: int, keep: int | None = None) -> tuple[bytes, list[int], float | None,
                                                            float | None]:
        """The first ``n`` bytes (only the first ``keep`` of them returned, when given), the
        frames they came from and the first/last timestamps."""
        buf = self.buf
        n = min(n, len(buf))
        frames: list[int] = []
        first_ts = last_ts = None
        if n <= 0:
            return b"", frames, first_ts, last_ts
        out = bytes(buf[:n if keep is None or keep > n else keep])
        del buf[:n]
        upto = self.base + n
        self.base = upto
        # the first mark starts at the old base, so every mark up to the first that ends
        # past upto delivered some of these bytes; those ending by upto are used up
        marks = self.marks
        while marks:
            end, frame, ts = marks[0]
            if not frames or frames[-1] != frame:
                frames.append(frame)
            if first_ts is None:
                first_ts = ts
            last_ts = ts
            if end > upto:
                break
            marks.popleft()
        return out, frames, first_ts, last_ts

    def line(self, split_long: bool = False):
        """``(line without CRLF/LF, frames, first_ts, last_ts, too_long)`` or None (need more).

        A line longer than ``max_line`` is returned cut, with ``too_long`` True, and the rest
        of it, up to the next LF, is discarded - or, with ``split_long``, handed out in
        ``max_line`` pieces (each ``too_long``) so a caller counting bytes loses none.
        """
        while True:
            i = self.buf.find(b"\n")
            if self.skipping:
                if i < 0:
                    self.take(len(self.buf))
                    return None
                self.take(i + 1)
                self.skipping = False
                continue
            if i < 0:
                if len(self.buf) > self.max_line:
                    raw, frames, t0, t1 = self.take(self.max_line)
                    self.skipping = not split_long
                    return raw, frames, t0, t1, True
                return None
            # the line without its LF (and CR), copied once
            raw, frames, t0, t1 = self.take(i + 1, i - 1 if i and self.buf[i - 1] == 13 else i)
            if len(raw) > self.max_line and not split_long:
                return raw[: self.max_line], frames, t0, t1, True
            return raw, frames, t0, t1, False


def split_command(line: bytes) -> tuple[str, str]:
    """``b"RETR file"`` -> ``("RETR", "file")``; the verb upper-cased, the argument kept."""
    text = line.decode("utf-8", "replace")
    verb, _, arg = text.partition(" ")
    return verb.strip().upper(), arg


def _ts_delta(a, b):
    return round(b - a, 6) if a is not None and b is not None else None


def _endpoint(meta: dict, side: str):
    """(ip, port) of ``side`` ("client"/"server") from the dispatcher's meta, or (None, None)."""
    v = meta.get(side)
    if isinstance(v, (tuple, list)) and len(v) == 2:
        return v[0], v[1]
    return meta.get(f"{side}_ip"), meta.get(f"{side}_port")


def parse_port_arg(arg: str):
    """PORT/227 ``h1,h2,h3,h4,p1,p2`` -> (ip, port) or None."""
    m = _SIX.search(arg.encode() if isinstance(arg, str) else arg)
    if not m:
        return None
    nums = [int(x) for x in m.groups()]
    if any(x > 255 for x in nums):
        return None
    return ".".join(map(str, nums[:4])), nums[4] * 256 + nums[5]


def parse_eprt_arg(arg: str):
    """EPRT ``|af|addr|port|`` -> (ip, port) or None."""
    if len(arg) < 2:
        return None
    d = arg[0]
    parts = arg.split(d)
    if len(parts) < 5:
        return None
    try:
        ip = str(ipaddress.ip_address(parts[2]))
        port = int(parts[3])
    except ValueError:
        return None
    return (ip, port) if 0 < port < 65536 else None


class FtpParser(StreamParser):
    name = "ftp"
    ports = (21,)
    probe_max = 1.0

    @classmethod
    def probe_bound(cls, sport: int, dport: int) -> float:
        return min(1.0, 0.9 + 0.1) if 21 in (sport, dport) else 0.9

    @classmethod
    def probe(cls, client_head: bytes, server_head: bytes, sport: int, dport: int) -> float:
        score = 0.0
        if server_head:
            if server_head.startswith((b"+OK", b"* OK", b"-ERR")):
                return 0.0
            first = server_head.split(b"\n", 1)[0]
            if _REPLY.match(first):
                score = 0.4
                if b"FTP" in first.upper():
                    score = 0.9
            elif not client_head:
                return 0.0
        if client_head:
            verb, _ = split_command(client_head.split(b"\n", 1)[0].rstrip(b"\r"))
            if verb in ("EHLO", "HELO", "CAPA", "STLS"):
                return 0.0
            if verb in FTP_COMMANDS and verb not in ("USER", "PASS", "QUIT", "NOOP", "HELP"):
                score = max(score, 0.8)
            elif verb in ("USER", "PASS"):
                score = max(score, 0.5 if score >= 0.4 else 0.3)
            if not server_head:
                score = min(score, 0.45)   # one side only: a data connection can start "STOR"
        if 21 in (sport, dport) and score:
            score = min(1.0, score + 0.1)
        return score

    def __init__(self, conn=None, meta=None):
        super().__init__(conn, meta)
        self.streams = [TextStream(), TextStream()]
        self.pending: deque = deque()    # commands waiting for a final reply
        self.reply = None                # multi-line reply being collected
        self.tls = False                 # after AUTH TLS/SSL answered 234: the rest is TLS
        self.stopped = [False, False]
        self.user = None
        self.replied = False

    # -- input --------------------------------------------------------------------------
    def feed(self, direction: int, data: bytes, frame: int, ts: float) -> list[dict]:
        if self.stopped[direction]:
            return []
        self.streams[direction].push(data, frame, ts)
        return self._run()

    def _run(self) -> list[dict]:
        out: list[dict] = []
        progressed = True
        while progressed:
            progressed = False
            if not self.stopped[SERVER]:
                while (item := self.streams[SERVER].line()) is not None:
                    out += self._server_line(*item)
                    progressed = True
                    if self.stopped[SERVER]:
                        break
            if not self.stopped[CLIENT]:
                while not self._client_held() and (item := self.streams[CLIENT].line()) is not None:
                    out += self._client_line(*item)
                    progressed = True
                    if self.stopped[CLIENT]:
                        break
        return out

    def _client_held(self) -> bool:
        """After AUTH TLS/SSL the client's next bytes are TLS if the reply is 234: wait for it."""
        if self.pending and self.pending[-1]["command"] == "AUTH" and \
                self.pending[-1]["arg"].strip().upper() in ("TLS", "SSL", "TLS-C", "TLS-P"):
            if len(self.streams[CLIENT]) > MAX_HELD_BYTES:
                return False
            return True
        return False

    def _client_line(self, line, frames, t0, t1, too_long) -> list[dict]:
        out = []
        if too_long:
            out.append(anomaly(self.name, "ftp-line-too-long", frames[0],
                               f"command line over {MAX_LINE} bytes", self.conn))
        if not line.strip():
            return out
        verb, arg = split_command(line)
        if verb not in FTP_COMMANDS:
            if not (verb.isascii() and verb.isprintable()):
                out.append(anomaly(self.name, "ftp-binary-line", frames[0],
                                   line[:32].hex(), self.conn))
                verb, arg = None, line[:64].hex()
            else:
                out.append(anomaly(self.name, "ftp-unknown-command", frames[0],
                                   verb[:32], self.conn))
        cmd = {"command": verb, "arg": arg, "frames": list(frames), "request_frame": frames[0],
               "request_ts": t0, "interim": []}
        if verb == "USER":
            self.user = arg
        self.pending.append(cmd)
        if verb in ("PORT", "EPRT"):
            ep = parse_port_arg(arg) if verb == "PORT" else parse_eprt_arg(arg)
            if ep is None:
                out.append(anomaly(self.name, "ftp-bad-port-argument", frames[0],
                                   f"{verb} {arg[:64]}", self.conn))
            else:
                # set up at the command itself, as Wireshark does for PORT (the server may
                # connect before its 200 reply arrives)
                out.append({"type": "ftp-expect", "conn": self.conn, "frames": list(frames),
                            "mode": "active", "ip": ep[0], "port": ep[1],
                            "command": verb, "command_frame": frames[0],
                            "setup_frame": frames[0]})
        return out

    def _server_line(self, line, frames, t0, t1, too_long) -> list[dict]:
        out = []
        if too_long:
            out.append(anomaly(self.name, "ftp-line-too-long", frames[0],
                               f"reply line over {MAX_LINE} bytes", self.conn))
        if self.reply is not None:
            r = self.reply
            r["lines"].append(line)
            for f in frames:
                if f not in r["frames"]:
                    r["frames"].append(f)
            r["last_ts"] = t1
            if line[:3] == r["code"] and line[3:4] in (b" ", b""):
                self.reply = None
                out += self._reply_done(r)
            elif len(r["lines"]) > MAX_REPLY_LINES:
                self.reply = None
                out.append(anomaly(self.name, "ftp-reply-too-long", frames[0],
                                   f"multi-line reply over {MAX_REPLY_LINES} lines", self.conn))
                out += self._reply_done(r)
            return out
        m = _REPLY.match(line)
        if not m:
            if line.strip():
                out.append(anomaly(self.name, "ftp-bad-reply-line", frames[0],
                                   line[:64].decode("latin-1"), self.conn))
            return out
        r = {"code": m.group(1), "lines": [line], "frames": list(frames), "ts": t0, "last_ts": t1}
        if m.group(2) == b"-":
            self.reply = r
            return out
        return out + self._reply_done(r)

    def _reply_done(self, r) -> list[dict]:
        code = int(r["code"])
        text = "\n".join(ln[4:].decode("utf-8", "replace") if i == 0 or ln[:3] == r["code"]
                         else ln.decode("utf-8", "replace") for i, ln in enumerate(r["lines"]))
        out: list[dict] = []
        if 100 <= code < 200 and self.pending:
            self.pending[0]["interim"].append(code)
            self.pending[0]["frames"] += [f for f in r["frames"] if f not in self.pending[0]["frames"]]
            return out
        greeting = not self.replied and code in (220, 120, 421)
        self.replied = True
        cmd = self.pending.popleft() if self.pending and not greeting else None
        rec = {"type": "ftp", "conn": self.conn,
               "command": cmd["command"] if cmd else None, "arg": cmd["arg"] if cmd else None,
               "reply_code": code, "reply_text": text,
               "interim": cmd["interim"] if cmd else [],
               "request_ts": cmd["request_ts"] if cmd else None, "reply_ts": r["ts"],
               "response_time_s": _ts_delta(cmd["request_ts"], r["ts"]) if cmd else None,
               "request_frame": cmd["request_frame"] if cmd else None,
               "reply_frame": r["frames"][0]}
        frames = (cmd["frames"] if cmd else []) + [f for f in r["frames"]
                                                   if not cmd or f not in cmd["frames"]]
        rec["frames"] = frames
        out.append(rec)
        verb = cmd["command"] if cmd else None
        if verb == "PASV" and code == 227:
            ep = parse_port_arg(text)
            if ep is None:
                out.append(anomaly(self.name, "ftp-bad-pasv-reply", r["frames"][0], text[:64],
                                   self.conn))
            else:
                out.append(self._expect("passive", ep[0], ep[1], cmd, r))
        elif verb == "EPSV" and code == 229:
            m = _EPSV.search(text.encode("utf-8", "replace"))
            if m is None:
                out.append(anomaly(self.name, "ftp-bad-epsv-reply", r["frames"][0], text[:64],
                                   self.conn))
            else:
                ip, _ = _endpoint(self.meta, "server")
                out.append(self._expect("passive", ip, int(m.group(2)), cmd, r))
        elif verb == "AUTH" and code == 234:
            self.tls = True
            self.stopped = [True, True]
            rec["tls"] = True
        return out

    def _expect(self, mode, ip, port, cmd, r) -> dict:
        return {"type": "ftp-expect", "conn": self.conn,
                "frames": sorted(set(cmd["frames"]) | set(r["frames"])),
                "mode": mode, "ip": ip, "port": port, "command": cmd["command"],
                "command_frame": cmd["request_frame"], "setup_frame": r["frames"][0]}

    def gap(self, direction, size, frame, ts):
        # a gap loses line sync: drop the partial line and carry on at the next LF
        s = self.streams[direction]
        if len(s):
            s.take(len(s))
        s.skipping = True
        if direction == SERVER:
            self.reply = None
        return [anomaly(self.name, "stream-gap", frame, f"{size} bytes missing", self.conn)]

    def close(self, ts=None) -> list[dict]:
        out = []
        if self.reply is not None:
            r, self.reply = self.reply, None
            out.append(anomaly(self.name, "ftp-reply-incomplete", r["frames"][0],
                               "multi-line reply not terminated", self.conn))
            out += self._reply_done(r)
        while self.pending:
            cmd = self.pending.popleft()
            out.append({"type": "ftp", "conn": self.conn, "frames": cmd["frames"],
                        "command": cmd["command"], "arg": cmd["arg"], "reply_code": None,
                        "reply_text": None, "interim": cmd["interim"],
                        "request_ts": cmd["request_ts"], "reply_ts": None,
                        "response_time_s": None, "request_frame": cmd["request_frame"],
                        "reply_frame": None})
        if self.tls:
            out.append({"type": "ftp-tls", "conn": self.conn, "frames": [],
                        "detail": "AUTH TLS accepted (234): the rest of the connection is TLS"})
        return out


# -- data-connection linkage -------------------------------------------------------------

def _same_ip(a, b) -> bool:
    if a is None or b is None:
        return False
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def _conn_field(c, name):
    return c[name] if isinstance(c, dict) else getattr(c, name)


def link_ftp_data(records: list[dict], connections: list) -> list[dict]:
    """Link data connections to control connections and transfer commands.

    ``records`` are the records of FTP control parsers (``ftp`` and ``ftp-expect``, any
    number of control connections); ``connections`` describe every TCP connection seen, as
    dicts (or objects) with ``conn``, ``client`` (ip, port), ``server`` (ip, port),
    ``first_frame``, ``last_frame``, ``client_bytes``, ``server_bytes``.

    An expectation names the listening endpoint; the data connection is the first TCP
    connection, opened at or after the expectation, whose responder (the SYN receiver) is that
    endpoint. It serves the first transfer command (LIST/NLST/MLSD/RETR/STOR/STOU/APPE) sent
    on the control connection after the PORT/PASV command. Returns ``ftp-data`` records (one
    per linked data connection) and one ``ftp-session`` summary per control connection.
    """
    conns = [c for c in connections]
    by_id = {_conn_field(c, "conn"): c for c in conns}
    controls: dict = {}
    for r in records:
        if r.get("type") in ("ftp", "ftp-expect"):
            controls.setdefault(r.get("conn"), []).append(r)
    used_conns: set = set()
    out: list[dict] = []
    sessions = []
    for control, recs in controls.items():
        ctl = by_id.get(control)
        exps = sorted((r for r in recs if r["type"] == "ftp-expect"), key=lambda r: r["setup_frame"])
        cmds = sorted((r for r in recs if r["type"] == "ftp" and r.get("command") is not None),
                      key=lambda r: r["request_frame"])
        used_cmds: set = set()
        data_ids = []
        user = None
        for c in cmds:
            if c["command"] == "USER":
                user = c["arg"]
        for e in exps:
            ip = e["ip"]
            if ip is None and ctl is not None:       # EPSV without the server address in meta
                ip = _conn_field(ctl, "server")[0]
            cands = [c for c in conns
                     if _conn_field(c, "conn") not in used_conns
                     and _conn_field(c, "conn") != control
                     and _conn_field(c, "server")[1] == e["port"]
                     and _same_ip(_conn_field(c, "server")[0], ip)
                     and _conn_field(c, "first_frame") >= e["command_frame"]]
            if not cands:
                continue
            dc = min(cands, key=lambda c: _conn_field(c, "first_frame"))
            did = _conn_field(dc, "conn")
            used_conns.add(did)
            tcmd = None
            for c in cmds:
                if id(c) in used_cmds or c["request_frame"] < e["command_frame"]:
                    continue
                if c["command"] in TRANSFER_COMMANDS:
                    tcmd = c
                    used_cmds.add(id(c))
                    break
            direction = TRANSFER_COMMANDS.get(tcmd["command"]) if tcmd else None
            # the FTP server's side of the data connection: the client (active) or server
            server_sends = (e["mode"] == "active")
            if direction == "upload":
                server_sends = not server_sends
            nbytes = _conn_field(dc, "client_bytes" if server_sends else "server_bytes")
            out.append({"type": "ftp-data", "conn": did, "control_conn": control,
                        "command": tcmd["command"] if tcmd else None,
                        "arg": tcmd["arg"] if tcmd else None,
                        "command_frame": tcmd["request_frame"] if tcmd else None,
                        "setup_frame": e["setup_frame"], "setup_command": e["command"],
                        "mode": e["mode"], "bytes": nbytes if direction else
                        _conn_field(dc, "client_bytes") + _conn_field(dc, "server_bytes"),
                        "direction": direction,
                        "frames": [_conn_field(dc, "first_frame"), _conn_field(dc, "last_frame")]})
            data_ids.append(did)
        sessions.append({"type": "ftp-session", "conn": control, "control_conn": control,
                         "frames": sorted({f for r in recs for f in r.get("frames", [])}),
                         "user": user, "data_conns": data_ids, "commands": len(cmds)})
    return out + sessions


class FtpDataLinker:
    """Collects control records and connections, then links them (see :func:`link_ftp_data`)."""

    def __init__(self):
        self.records: list[dict] = []
        self.connections: list = []

    def add_records(self, records) -> None:
        self.records += [r for r in records if r.get("type") in ("ftp", "ftp-expect")]

    def add_connection(self, conn) -> None:
        self.connections.append(conn)

    def link(self) -> list[dict]:
        return link_ftp_data(self.records, self.connections)


# -- display path ------------------------------------------------------------------------

def command_reply_layer(data: bytes, offset: int, protocol: str, commands, reply_re, *,
                        code: str, reply_arg: str, command: str, command_arg: str,
                        ref: str) -> list[Layer]:
    """Display path shared by the line protocols that speak 'VERB arg' / 'NNN text' (FTP,
    SMTP): the lines starting in one segment as one layer, with frame offsets; [] when the
    first line is neither a known command nor a reply."""
    lines = _lines_with_offsets(data)
    if not lines:
        return []
    first = lines[0][1]
    verb, _ = split_command(first)
    if not reply_re.match(first) and verb not in commands:
        return []
    layer = Layer(protocol, offset, len(data))
    for start, line in lines:
        m = reply_re.match(line)
        if m:
            layer.add(code, int(m.group(1)), offset + start, 3, f"reply code ({ref})")
            if len(line) > 4:
                layer.add(reply_arg, line[4:].decode("utf-8", "replace"), offset + start + 4,
                          len(line) - 4)
            continue
        verb, arg = split_command(line)
        if verb in commands:
            layer.add(command, verb, offset + start, len(verb), "command verb")
            if arg:
                layer.add(command_arg, arg, offset + start + len(verb) + 1,
                          len(line) - len(verb) - 1)
        else:
            layer.add(f"{protocol}.line", line.decode("utf-8", "replace"), offset + start,
                      len(line))
    return [layer]


def dissect_payload(data: bytes, offset: int) -> list[Layer]:
    """FTP command or reply lines starting in one segment (frame offsets); [] if not FTP."""
    return command_reply_layer(data, offset, "ftp", FTP_COMMANDS, _REPLY,
                               code="ftp.response.code", reply_arg="ftp.response.arg",
                               command="ftp.request.command", command_arg="ftp.request.arg",
                               ref="RFC 959 4.2")


def _lines_with_offsets(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    pos = 0
    while pos < len(data):
        i = data.find(b"\n", pos)
        end = len(data) if i < 0 else i
        line = data[pos:end].rstrip(b"\r")
        if line:
            out.append((pos, line))
        pos = end + 1
    return out


PARSERS = [FtpParser]
