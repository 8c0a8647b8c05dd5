"""The connection table (rendering only)."""

from __future__ import annotations

from dissect.report.text import human_bytes, safe, table


def _ms(v):
    return "-" if v is None else f"{v * 1000:.3f}"


def render_flows(conns: list[dict]) -> str:
    if not conns:
        return "no connections"
    rows = []
    for c in conns:
        hs = c.get("handshake") or {}
        rows.append([
            c["id"], c["proto"],
            safe(f"{c['client']['ip']}:{c['client']['port']}"),
            safe(f"{c['server']['ip']}:{c['server']['port']}"),
            c.get("state") or "-", c.get("history") or "-",
            _ms(hs.get("rtt_s")), f"{c['duration_s']:.3f}",
            f"{c['packets']['client']}/{c['packets']['server']}",
            f"{human_bytes(c['bytes']['client'])}/{human_bytes(c['bytes']['server'])}",
            c.get("retransmissions", "-") if c["proto"] == "tcp" else "-",
            c.get("app") or "-",
        ])
    head = ["id", "proto", "client", "server", "state", "history", "hs RTT ms", "duration s",
            "pkts c/s", "bytes c/s", "retrans", "app"]
    tcp = sum(1 for c in conns if c["proto"] == "tcp")
    return (f"{len(conns)} connections ({tcp} TCP, {len(conns) - tcp} UDP)\n"
            + table(rows, head))
