"""The classic comparison table, one row per conversation (TCP connection or UDP flow).

For each conversation, with the evidence for every column:

* ``model`` - ``client-server`` (one side offers a service on a well-known/registered port
  and the other opened the conversation to it, or a request/response protocol names the
  roles) or ``peer-to-peer`` (both ends talk between ports outside the well-known services,
  neither plays a server role: e.g. RTP between two hosts after a STUN check). Media relayed
  through a TURN server (port 3478) is client-server: the relay is the server.
* ``connection`` - ``stateless request-response`` (each exchange stands alone: DNS, one HTTP
  request per connection, a one-shot data connection, UDP echo) or ``persistent`` (the
  conversation outlives an exchange: keep-alive with several requests, WebSocket, gRPC/HTTP/2
  streams, mail and FTP sessions, media streams).
* ``transport`` - TCP, UDP or QUIC (QUIC headers seen on the UDP flow).
* ``reliability`` - what was seen: TCP retransmissions and missed bytes (TCP analysis), RTP
  loss and duplicates from sequence numbers (RFC 3550 A.3), DNS query retransmissions; UDP
  without any of those says "no recovery at transport".
* ``use`` - browsing, API, chat / real-time messaging, media streaming, mail, file transfer,
  name lookup, NAT traversal, ... from the application protocol and its content.

Record: ``{"type": "conversation", "conn", "client", "server", "protocol", "model",
"connection", "transport", "reliability", "use", "evidence": {column: text}}``.
"""

from __future__ import annotations

from dissect.analysis.findings.timing import looks_like_tls

# ports below which a port is a service port (IANA system ports)
SYSTEM_PORTS = 1024
# registered service ports above 1023 that name a server role
SERVICE_PORTS = {1433: "mssql", 1883: "mqtt", 2525: "smtp", 3306: "mysql", 3478: "stun/turn",
                 5060: "sip", 5061: "sips", 5222: "xmpp", 5349: "turns", 5353: "mdns",
                 5432: "postgresql", 5672: "amqp", 6379: "redis", 8000: "http-alt",
                 8008: "http-alt", 8080: "http-alt", 8443: "https-alt", 8888: "http-alt",
                 9090: "http-alt", 9200: "elasticsearch", 27017: "mongodb", 50051: "grpc"}
# a keep-alive connection idle/open longer than this with one exchange is still persistent
LONG_LIVED_S = 60.0

USE_BY_PROTOCOL = {
    "http": "browsing", "http2": "browsing", "grpc": "API (RPC)",
    "websocket": "chat / real-time messaging",
    "smtp": "mail (sending)", "imap": "mail (reading)", "pop3": "mail (reading)",
    "ftp": "file transfer (control)", "ftp-data": "file transfer (data)",
    "dns": "name lookup", "stun": "NAT traversal", "rtp": "media streaming (voice/video)",
    "dtls": "real-time media key exchange (DTLS)", "quic": "web (HTTP/3 over QUIC)",
    "tls": "encrypted (TLS)",
}
PERSISTENT_SESSION = {"smtp", "imap", "pop3", "ftp", "websocket", "grpc", "http2", "rtp"}
PORT_USE = {7: ("echo (diagnostics)", "echo"), 22: ("remote shell", "ssh"),
            80: ("web (HTTP)", "http"), 8080: ("web (HTTP)", "http-alt"),
            50051: ("API (gRPC)", "grpc"),
            443: ("web (HTTPS)", "https"), 853: ("name lookup (DNS over TLS)", "dot"),
            993: ("mail (reading, IMAPS)", "imaps"), 995: ("mail (reading, POP3S)", "pop3s"),
            465: ("mail (sending, SMTPS)", "smtps"), 123: ("time sync", "ntp"),
            67: ("address assignment", "dhcp"), 68: ("address assignment", "dhcp"),
            5060: ("voice signalling", "sip"), 1883: ("IoT messaging", "mqtt")}


def _ep(e: dict) -> str:
    ip = e["ip"]
    return f"[{ip}]:{e['port']}" if ":" in ip else f"{ip}:{e['port']}"


def _service(port: int) -> bool:
    return port < SYSTEM_PORTS or port in SERVICE_PORTS


def _protocol(conn: dict, recs: list) -> str | None:
    types = [r.get("type") for r in recs]
    for t in ("websocket", "grpc", "http2", "http", "ftp-data", "ftp", "smtp", "imap", "pop3",
              "dns", "quic", "rtp", "dtls", "stun", "tls"):
        if t in types:
            return t
    app = conn.get("app")
    return None if app in (None, "rtc") else app


def _model(conn, recs, proto):
    c, s = conn["client"], conn["server"]
    ev = []
    rtc = {r.get("type") for r in recs} & {"rtp", "stun", "dtls", "rtcp"}
    if rtc and not _service(s["port"]) and not _service(c["port"]):
        stun = [r for r in recs if r.get("type") == "stun"]
        rtp = [r for r in recs if r.get("type") == "rtp"]
        ev.append(f"both ends on non-service ports ({_ep(c)} <-> {_ep(s)})")
        if stun and rtp:
            first_rtp = min(r.get("first_frame") or min(r.get("frames") or [0]) for r in rtp)
            first_stun = min(min(r.get("frames") or [first_rtp]) for r in stun)
            if first_stun <= first_rtp:
                ev.append("STUN connectivity check, then RTP on the same ports")
        dirs = {tuple(r.get("src") or ()) for r in rtp}
        if len(dirs) >= 2:
            ev.append("media sent both ways")
        return "peer-to-peer", "; ".join(ev)
    if rtc and s["port"] in (3478, 5349):
        what = "media relayed through" if "rtp" in rtc else "requests to"
        return "client-server", f"{what} the STUN/TURN service at {_ep(s)}"
    if conn.get("proto") == "tcp":
        hs = conn.get("handshake") or {}
        if hs.get("syn") is not None:
            ev.append(f"{_ep(c)} opened the connection (SYN) to {_ep(s)}")
        else:
            ev.append(f"no SYN seen; server side guessed from ports ({s['port']})")
    else:
        ev.append(f"{_ep(c)} sent first, to {_ep(s)}")
    if _service(s["port"]):
        name = SERVICE_PORTS.get(s["port"])
        ev.append(f"server port {s['port']}" + (f" ({name})" if name else " (system port)"))
    if proto in USE_BY_PROTOCOL and proto not in ("rtp", "stun", "dtls", "tls", "quic"):
        ev.append(f"{proto} requests/responses name the roles")
    if not _service(s["port"]) and not _service(c["port"]) and proto is None:
        return "peer-to-peer", "; ".join(ev + ["no service port and no request/response "
                                                  "protocol: no server role seen"])
    return "client-server", "; ".join(ev)


def _connection(conn, recs, proto, exchanges=0):
    types = [r.get("type") for r in recs]
    dur = conn.get("duration_s") or 0.0
    if proto in (None, "tls") and conn.get("proto") == "tcp" and exchanges > 1:
        what = "encrypted " if proto == "tls" else ""
        return "persistent", f"{exchanges} {what}request/response exchanges (client burst, " \
                             "server burst) on one connection"
    if proto == "websocket":
        return "persistent", "HTTP Upgrade to WebSocket: one long-lived message channel"
    if proto in ("grpc", "http2"):
        n = sum(1 for t in types if t in ("grpc", "http2"))
        return "persistent", f"HTTP/2 connection multiplexing {n} stream record(s)"
    if proto == "http":
        n = types.count("http")
        if n > 1:
            return "persistent", f"keep-alive: {n} requests on one connection"
        if dur > LONG_LIVED_S:
            return "persistent", f"one request, connection open {dur:.0f} s"
        return "stateless request-response", "one request/response on the connection"
    if proto == "dns":
        n = types.count("dns")
        return "stateless request-response", f"{n} independent query/response pair(s)"
    if proto == "ftp-data":
        return "stateless request-response", "one transfer per data connection (opened, " \
                                             "sent, closed)"
    if proto == "rtp":
        return "persistent", "continuous media stream (RTP sequence)"
    if proto in ("smtp", "imap", "pop3", "ftp"):
        n = sum(1 for r in recs if r.get("type") == proto and r.get("command"))
        return "persistent", f"stateful {proto.upper()} session: {n} commands on one connection"
    if proto in ("stun",):
        return "stateless request-response", "STUN binding transactions"
    pk = conn.get("packets") or {}
    np_ = (pk.get("client") or 0) + (pk.get("server") or 0)
    if conn.get("proto") == "udp":
        if pk.get("client") and pk.get("server") and abs(pk["client"] - pk["server"]) <= 1:
            return "stateless request-response", \
                f"{pk['client']} datagrams answered by {pk['server']}: one reply per request"
        return "persistent" if dur > LONG_LIVED_S else "stateless request-response", \
            f"{np_} datagrams over {dur:.1f} s"
    if dur > LONG_LIVED_S:
        return "persistent", f"open {dur:.0f} s"
    return "stateless request-response", f"{np_} packets over {dur:.1f} s, no protocol " \
                                         "showing more than one exchange"


def _reliability(conn, recs):
    parts = []
    if conn.get("proto") == "tcp":
        n = conn.get("retransmissions") or 0
        parts.append(f"{n} TCP retransmission(s)" if n else "no TCP retransmissions")
        if conn.get("missed_bytes"):
            parts.append(f"{conn['missed_bytes']} bytes missed by the capture")
        summary = "retransmissions" if n else "clean"
        return summary, "; ".join(parts)
    rtp = [r for r in recs if r.get("type") == "rtp"]
    dns_rx = sum(1 for r in recs if r.get("type") == "dns" and r.get("retransmission"))
    summary = "no recovery at transport (UDP)"
    if rtp:
        lost = sum(max(0, r.get("lost") or 0) for r in rtp)
        exp = sum(r.get("expected") or 0 for r in rtp)
        dup = sum(r.get("duplicates") or 0 for r in rtp)
        parts.append(f"RTP: {lost} of {exp} packets lost, {dup} duplicate(s) over "
                     f"{len(rtp)} SSRC(s) (sequence numbers)")
        summary = "loss seen" if lost else "no loss seen"
    if dns_rx:
        parts.append(f"{dns_rx} DNS query retransmission(s) (application-level retry)")
        summary = "application retries"
    if not parts:
        parts.append("UDP: no sequence numbers or acknowledgements to recover loss")
    return summary, "; ".join(parts)


def _use(conn, recs, proto):
    if proto == "http":
        ctypes = " ".join(str(r.get(k) or "") for r in recs if r.get("type") == "http"
                          for k in ("content_type", "response_content_type")).lower()
        if any(x in ctypes for x in ("json", "xml", "protobuf", "grpc")) and "html" not in ctypes:
            return "API", f"response content types: {ctypes.strip() or '?'}"
        return "browsing", "HTTP requests" + (f" ({ctypes.strip()})" if ctypes.strip() else "")
    if proto in USE_BY_PROTOCOL:
        ev = f"{proto} records"
        if proto == "tls":
            sni = next((r.get("sni") for r in recs if r.get("sni")), None)
            alpn = next((r.get("alpn") for r in recs if r.get("alpn")), None)
            if conn["server"]["port"] in PORT_USE:
                return PORT_USE[conn["server"]["port"]][0], \
                    f"TLS to port {conn['server']['port']}" + (f", SNI {sni}" if sni else "")
            return "encrypted (TLS)", "TLS" + (f", SNI {sni}" if sni else "") + \
                (f", ALPN {alpn}" if alpn else "")
        if proto == "stun":
            methods = sorted({str(r.get("method")) for r in recs if r.get("type") == "stun"})
            ev = f"STUN {', '.join(methods)} transactions"
        if proto in ("rtp",):
            enc = sorted({str(r.get("encoding")) for r in recs if r.get("type") == "rtp"
                          and r.get("encoding")})
            ev = "RTP payload " + (", ".join(enc) if enc else "types " + ", ".join(
                sorted({str(r.get("payload_type")) for r in recs if r.get("type") == "rtp"})))
        return USE_BY_PROTOCOL[proto], ev
    for port in (conn["server"]["port"], conn["client"]["port"]):
        if port in PORT_USE:
            return PORT_USE[port][0], f"port {port} ({PORT_USE[port][1]}); no parser confirmed it"
    return "unknown", "no application protocol recognised"


def conversation_records(result, frames=None, limit: int | None = None) -> list[dict]:
    """One record per connection, in connection order (the first ``limit`` only, when
    given)."""
    by_conn: dict = {}
    for r in result.records:
        by_conn.setdefault(r.get("conn"), []).append(r)
    exchanges: dict = {}
    if frames is not None:
        from dissect.analysis.findings.timing import timing_records
        for t in timing_records(result, frames):
            if "exchange" in t["transaction"] and not t["transaction"].get("outcome"):
                exchanges[t["conn"]] = exchanges.get(t["conn"], 0) + 1
    out = []
    for conn in result.connections:
        if conn.get("type", "connection") != "connection":
            continue
        if limit is not None and len(out) >= limit:
            break
        recs = by_conn.get(conn["id"], [])
        proto = _protocol(conn, recs)
        if proto is None and conn.get("proto") == "tcp" and looks_like_tls(frames, conn["id"]):
            proto = "tls"      # ClientHello record header seen, no TLS parser record
        model, mev = _model(conn, recs, proto)
        ctype, cev = _connection(conn, recs, proto, exchanges.get(conn["id"], 0))
        rel, rev = _reliability(conn, recs)
        use, uev = _use(conn, recs, proto)
        transport = "QUIC" if proto == "quic" else str(conn.get("proto", "?")).upper()
        if proto == "quic":
            tev = "QUIC long/short headers on UDP"
        elif transport == "TCP":
            syn = (conn.get("handshake") or {}).get("syn")
            tev = f"TCP ({'SYN handshake' if syn else 'no handshake seen'})"
        else:
            tev = "UDP datagrams"
        out.append({"type": "conversation", "conn": conn["id"],
                    "client": conn["client"], "server": conn["server"], "protocol": proto,
                    "model": model, "connection": ctype, "transport": transport,
                    "reliability": rel, "use": use,
                    "start_ts": conn.get("start_ts"), "duration_s": conn.get("duration_s"),
                    "evidence": {"model": mev, "connection": cev, "transport": tev,
                                 "reliability": rev, "use": uev}})
    return out
