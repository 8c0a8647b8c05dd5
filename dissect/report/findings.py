"""Terminal rendering of the findings: timing waterfalls, cleartext findings, the
conversation table. Rendering only: records in, text out."""

from __future__ import annotations

from dissect.report.text import safe, table

BAR_WIDTH = 40          # characters of the widest bar in a waterfall
STAGE_MARK = {"handshake": "=", "tls": "#", "request": ">", "wait": ".", "transfer": "<",
              "teardown": "x"}


def _ms(s: float) -> str:
    if s >= 1.0:
        return f"{s:.3f} s"
    return f"{s * 1000:.3f} ms"


def _ident(tx: dict) -> str:
    parts = []
    for k, v in tx.items():
        if k == "encrypted":
            if v:
                parts.append("(encrypted)")
            continue
        if v is False:
            continue
        if v is True:
            parts.append(k)
            continue
        if k in ("command", "method", "qname", "service", "sni"):
            parts.append(safe(v))
        elif k == "exchange":
            parts.append(f"exchange {v}")
        else:
            parts.append(f"{k}={safe(v)}")
    return " ".join(parts)


def render_timing(records: list[dict], width: int = BAR_WIDTH) -> str:
    """One block per transaction: a header line, then one bar per stage on a common time
    axis (the transaction's own span), labelled with its OSI layer and duration."""
    if not records:
        return "no transactions with timing"
    out = []
    for r in records:
        st = r["stages"]
        out.append(f"conn {r['conn']}  {r['protocol']}  {_ident(r['transaction'])}  "
                   f"total {_ms(r['total_s'])}  slowest: {r['slowest']}")
        if not st:
            out.append("")
            continue
        t0 = st[0]["start_ts"]
        span = r["total_s"] or 0.0
        for s in st:
            off = s["start_ts"] - t0
            if span > 0:
                a = int(round(off / span * width))
                n = int(round(s["duration_s"] / span * width))
            else:
                a, n = 0, 0
            a = min(a, width - 1)
            n = max(1, min(n, width - a))
            bar = " " * a + STAGE_MARK.get(s["name"], "-") * n
            bar = bar.ljust(width)
            slow = " *" if s["name"] == r["slowest"] else ""
            out.append(f"  {s['name']:<9} {s['osi']:<6}|{bar}| {_ms(s['duration_s']):>12}"
                       f"  frames {_frames(s['frames'])}{slow}")
        out.append("")
    return "\n".join(out).rstrip("\n")


def _frames(fr: list) -> str:
    if not fr:
        return "-"
    if len(fr) <= 4:
        return ",".join(str(f) for f in fr)
    return f"{fr[0]}..{fr[-1]} ({len(fr)})"


def render_findings(findings: list[dict]) -> str:
    if not findings:
        return "no cleartext credentials, secrets or weak encryption found"
    rows = [[f["severity"], f["kind"], f["conn"], f["protocol"], _frames(f["frames"]),
             safe(f["detail"]), "" if f["secret"] is None else safe(f["secret"])]
            for f in findings]
    return table(rows, ["severity", "kind", "conn", "proto", "frames", "detail", "secret"])


def _ep(e: dict) -> str:
    ip = e["ip"]
    return f"[{ip}]:{e['port']}" if ":" in ip else f"{ip}:{e['port']}"


def render_conversations(records: list[dict], evidence: bool = True) -> str:
    if not records:
        return "no conversations"
    rows = [[r["conn"], f"{_ep(r['client'])} -> {_ep(r['server'])}", r["protocol"] or "-",
             r["model"], r["connection"], r["transport"], r["reliability"], r["use"]]
            for r in records]
    out = table(rows, ["conn", "client -> server", "app", "model", "connection", "transport",
                       "reliability", "use"])
    if evidence:
        lines = [out, "", "evidence:"]
        for r in records:
            lines.append(f"  conn {r['conn']}:")
            for k in ("model", "connection", "transport", "reliability", "use"):
                lines.append(f"    {k:<11} {safe(r['evidence'][k])}")
        out = "\n".join(lines)
    return out
