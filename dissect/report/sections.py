"""Application sections of the ``analyze`` report: one short table per protocol found.

Rendering only: the rows come from the application records of the engine's Result.
"""

from __future__ import annotations

from dissect.analysis.observe import Observer
from dissect.report.text import safe, table

# rows shown per section before "... and N more"
MAX_ROWS = 15
# transactions in the "Slowest transactions" table
SLOWEST = 5


def _ms(v):
    return "-" if v is None else f"{v * 1000:.1f}"


def _cut(s, n=48):
    s = safe("" if s is None else s)
    return s if len(s) <= n else s[: n - 3] + "..."


SECTIONS = [
    # (record type, title, headers, row function)
    ("http", "HTTP transactions (L7)",
     ["frame", "conn", "method", "host", "target", "status", "ms"],
     lambda r: [r.get("request_frame"), r.get("conn"), r.get("method"), _cut(r.get("host"), 24),
                _cut(r.get("target")), r.get("status") if r.get("status") is not None else "none",
                _ms(r.get("response_time_s"))]),
    ("websocket", "WebSocket frames (L7)",
     ["frame", "conn", "from", "opcode", "fin", "len", "close"],
     lambda r: [(r.get("frames") or [None])[0], r.get("conn"), r.get("direction"),
                r.get("opcode_name", r.get("opcode")), r.get("fin"), r.get("payload_len"),
                r.get("close_code") or ""]),
    ("tls", "TLS sessions (L5/L6)",
     ["conn", "sni", "version", "alpn", "cipher", "resumed"],
     lambda r: [r.get("conn"), _cut(r.get("sni"), 32), r.get("version"), r.get("alpn"),
                _cut(r.get("cipher"), 32), r.get("resumed")]),
    ("grpc", "gRPC calls (L7)",
     ["conn", "service", "method", "status", "req msgs", "resp msgs"],
     lambda r: [r.get("conn"), _cut(r.get("service"), 32), r.get("method"), r.get("grpc_status"),
                r.get("requests"), r.get("responses")]),
    ("http2", "HTTP/2 streams (L5/L7)",
     ["conn", "stream", "method", "path", "status"],
     lambda r: [r.get("conn"), r.get("stream_id"), r.get("method"), _cut(r.get("path")),
                r.get("status")]),
    ("ftp", "FTP commands (L7)",
     ["frame", "conn", "command", "arg", "reply", "ms"],
     lambda r: [(r.get("frames") or [None])[0], r.get("conn"), r.get("command"),
                _cut(r.get("arg"), 32) if (r.get("command") or "").upper() != "PASS" else "****",
                r.get("reply_code"), _ms(r.get("response_time_s"))]),
    ("ftp-data", "FTP data connections (L5)",
     ["data conn", "control conn", "command", "mode", "bytes"],
     lambda r: [r.get("conn"), r.get("control_conn"), f"{r.get('command') or ''} {_cut(r.get('arg'), 24)}",
                r.get("mode"), r.get("bytes")]),
    ("smtp-envelope", "SMTP messages (L7)",
     ["conn", "mail from", "rcpt to", "bytes", "reply"],
     lambda r: [r.get("conn"), _cut(r.get("mail_from"), 32), _cut(", ".join(r.get("rcpt_to") or []), 40),
                r.get("data_bytes"), r.get("reply_code")]),
    ("imap", "IMAP commands (L7)",
     ["conn", "tag", "command", "status"],
     lambda r: [r.get("conn"), r.get("tag"), r.get("command"), r.get("status")]),
    ("pop3", "POP3 commands (L7)",
     ["conn", "command", "status"],
     lambda r: [r.get("conn"), r.get("command"), r.get("status")]),
    ("dns", "DNS queries (L7)",
     ["frame", "name", "type", "rcode", "answers", "ms", "retrans"],
     lambda r: [r.get("query_frame"), _cut(r.get("qname"), 40), r.get("qtype"), r.get("rcode"),
                len(r.get("answers") or []), _ms(r.get("response_time_s")),
                "yes" if r.get("retransmission") else ""]),
    ("stun", "STUN (L5)",
     ["frame", "class", "method", "mapped address"],
     lambda r: [(r.get("frames") or [None])[0], r.get("class"), r.get("method"),
                r.get("xor_mapped_address") or r.get("mapped_address") or ""]),
    ("rtp", "RTP streams (L7)",
     ["ssrc", "pt", "packets", "lost", "jitter", "frames"],
     lambda r: [r.get("ssrc"), r.get("payload_type"), r.get("packets"), r.get("lost"),
                r.get("jitter"), f"{r.get('first_frame')}-{r.get('last_frame')}"]),
]


def _layer(osi) -> str:
    if osi is None:
        return "?"
    s = str(osi)
    return s if s.startswith("L") else f"L{s}"


class _Tables(Observer):
    """The per-protocol tables: per record type its count and first MAX_ROWS records; an
    observer, so it keeps MAX_ROWS records per type at most."""

    def __init__(self):
        self.by_type: dict = {}

    def record(self, r: dict) -> None:
        t = r.get("type")
        e = self.by_type.get(t)
        if e is None:
            e = self.by_type[t] = [0, []]
        e[0] += 1
        if len(e[1]) < MAX_ROWS:
            e[1].append(r)

    def finish(self, res):
        return self


class _Guard:
    """An analysis in the report's one pass: the first exception it raises stops it (and
    is said in the report instead of its section), not the pass."""

    def __init__(self, name: str, obs):
        self.name, self.obs, self.error = name, obs, None
        self._conn, self._record = obs.conn, obs.record

    def _fail(self, e: Exception) -> None:
        self.error = e
        self._conn = self._record = _ignore

    def start(self, res) -> None:
        try:
            self.obs.start(res)
        except Exception as e:
            self._fail(e)

    def conn(self, c) -> None:
        try:
            self._conn(c)
        except Exception as e:
            self._fail(e)

    def record(self, r) -> None:
        try:
            self._record(r)
        except Exception as e:
            self._fail(e)

    def finish(self, res):
        if self.error is not None:
            return None
        try:
            return self.obs.finish(res)
        except Exception as e:
            self._fail(e)
            return None

    def unavailable(self) -> str:
        e = self.error
        return f"({self.name} unavailable: {type(e).__name__}: {safe(e)})"


def _ignore(_x) -> None:
    pass


def _analyses(res) -> dict:
    """The report's analyses that are installed, as observers by name."""
    out: dict = {"tables": _Tables()}
    try:
        from dissect.analysis.backoff_chains import RetryObserver
        out["retry analysis"] = RetryObserver(getattr(res, "syns", None))
    except ImportError:
        pass
    try:
        from dissect.analysis.tiers import CascadeObserver
        out["cascade analysis"] = CascadeObserver()
    except ImportError:
        pass
    try:
        from dissect.analysis.findings.timing import TimingObserver
        if res.slowest_timings is None or res.slowest_timings[0] < SLOWEST:
            out["timing"] = TimingObserver(n=SLOWEST)
    except ImportError:
        pass
    try:
        from dissect.analysis.findings.conversations import ConversationObserver
        out["conversations"] = ConversationObserver(limit=MAX_ROWS)
    except ImportError:
        pass
    try:
        from dissect.analysis.findings.cleartext import CleartextObserver
        out["cleartext findings"] = CleartextObserver()
    except ImportError:
        pass
    return out


def sections(res) -> list[str]:
    """The report's sections after the summary: every analysis in one pass over the
    records (dissect.engine.finish_stream), so that a streamed run is read once and
    memory holds what the analyses keep, not the records."""
    from dissect.engine import finish_stream
    named = _analyses(res)
    guards = {k: _Guard(k, o) for k, o in named.items()}
    results = dict(zip(guards, finish_stream(res, list(guards.values()))))
    tables = results["tables"]
    out = []
    for rtype, title, headers, row in SECTIONS:
        n, recs = tables.by_type.get(rtype) or (0, [])
        if not n:
            continue
        rows = []
        for r in recs:
            try:
                rows.append([("" if v is None else v) for v in row(r)])
            except Exception:   # a record of an unexpected shape must not break the report
                continue
        text = f"{title}: {n}\n" + table(rows, headers)
        if n > MAX_ROWS:
            text += f"\n  ... and {n - MAX_ROWS} more (--format jsonl lists all)"
        out.append(text)
    out += _retries(guards.get("retry analysis"), results.get("retry analysis"))
    out += _cascades(guards.get("cascade analysis"), results.get("cascade analysis"))
    convs = named.get("conversations")
    out += _findings(res, guards, results, convs.count if convs is not None else 0)
    return out


def _retries(guard, recs) -> list[str]:
    if guard is None:
        return []
    if guard.error is not None:     # conclusions must never take the report down
        return [guard.unavailable()]
    if not recs:
        return []
    try:
        from dissect.commands.retrychains import render
    except ImportError:
        return []
    return ["Retries and circuit breakers ('dissect retries' for details)\n" +
            render(recs, limit=MAX_ROWS)]


def _cascades(guard, crecs) -> list[str]:
    if guard is None:
        return []
    if guard.error is not None:
        return [guard.unavailable()]
    try:
        from dissect.analysis.tiers import worst_amplification
        worst = worst_amplification(crecs or [])
        if worst is None:
            return []
        root = worst["root"]
        line = (f"Cascades ('dissect cascades' for the trees): worst amplification "
                f"{' -> '.join(map(str, worst['amplification']))} for "
                f"{safe(root['method'])} {safe(root['target'])} from "
                f"{safe(root['client'])}; the delay came from tier {worst['delay_tier']}")
        for b in crecs:
            if b["type"] == "cascade-breaker":
                line += (f"; a circuit breaker in {safe(b['service'])} kept "
                         f"{b['short_circuited']} request(s) from reaching "
                         f"{safe(b['below'])}")
        return [line]
    except Exception as e:   # conclusions must never take the report down
        return [f"(cascade analysis unavailable: {type(e).__name__}: {safe(e)})"]


def _findings(res, guards, results, nconvs) -> list[str]:
    """Conclusions drawn: the slowest transactions by layer, what each conversation is,
    what was sent in the clear."""
    try:
        return _findings_text(res, guards, results, nconvs)
    except Exception as e:   # conclusions must never take the report down
        return [f"(findings unavailable: {type(e).__name__}: {safe(e)})"]


def _failed(guards, name) -> bool:
    g = guards.get(name)
    if g is not None and g.error is not None:
        raise g.error
    return g is None


def _findings_text(res, guards, results, nconvs) -> list[str]:
    out = []
    if _failed(guards, "timing"):
        pre = res.slowest_timings
        timings = pre[1][:SLOWEST] if pre is not None and pre[0] >= SLOWEST else []
    else:
        timings = results["timing"]
    if timings:
        rows = []
        for r in timings:
            stage = next((st for st in r.get("stages", []) if st.get("name") == r.get("slowest")), {})
            tx = r.get("transaction") or {}
            what = " ".join(str(v) for k, v in tx.items() if v is not None and k in
                            ("method", "target", "command", "qname", "reply_code", "status"))
            rows.append([r.get("conn"), r.get("protocol"), _cut(what, 40),
                         _ms(r.get("total_s")), r.get("slowest"),
                         _layer(stage.get('osi')), _ms(stage.get("duration_s"))])
        out.append("Slowest transactions (where the time went; 'dissect timing' for all)\n" +
                   table(rows, ["conn", "protocol", "transaction", "total ms", "slowest stage",
                                "layer", "stage ms"]))
    # the table shows the first MAX_ROWS conversations (one per connection) and counts
    # the rest
    convs = [] if _failed(guards, "conversations") else results["conversations"]
    if convs:
        rows = [[c.get("conn"), _cut(f"{c['client']['ip']}:{c['client']['port']} -> "
                                     f"{c['server']['ip']}:{c['server']['port']}", 44),
                 c.get("protocol") or "-", c.get("model"), c.get("connection"),
                 c.get("transport"), c.get("reliability"), _cut(c.get("use"), 28)]
                for c in convs[:MAX_ROWS]]
        text = ("What each conversation is ('dissect conversations' for the evidence)\n" +
                table(rows, ["conn", "endpoints", "protocol", "model", "connection",
                             "transport", "reliability", "use"]))
        if nconvs > MAX_ROWS:
            text += f"\n  ... and {nconvs - MAX_ROWS} more"
        out.append(text)
    found = [] if _failed(guards, "cleartext findings") else results["cleartext findings"]
    if found:
        order = {"high": 0, "medium": 1, "low": 2, "info": 3}
        found.sort(key=lambda f: order.get(f.get("severity"), 9))
        rows = [[f.get("severity"), f.get("kind"), f.get("conn"), f.get("protocol"),
                 _cut(f.get("detail"), 50), _cut(f.get("secret") or "", 16)]
                for f in found[:MAX_ROWS]]
        text = (f"Sent in the clear: {len(found)} finding(s) (secrets masked; "
                f"'dissect cleartext --show-secrets')\n" +
                table(rows, ["severity", "kind", "conn", "protocol", "detail", "secret"]))
        out.append(text)
    return out


