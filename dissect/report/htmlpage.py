"""One self-contained HTML report (inline CSS, SVG and a few lines of JS; no network):
capture summary, traffic by OSI layer, protocol hierarchy, connections, a retransmission
timeline, each retry chain plotted with its fitted backoff curve, circuit-breaker timelines,
and a per-packet layer view that expands field by field. Rendering only; every string that
comes from the capture is escaped."""

from __future__ import annotations

from html import escape

from dissect.osi import Osi
from dissect.report.text import human_bytes

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;font-size:13px}th{background:#f4f4f4}.num{text-align:right}
.L7{color:#b3261e}.L6{color:#8e24aa}.L5{color:#a66f00}.L4{color:#2e7d32}.L3{color:#00838f}
.L2{color:#1565c0}.L1{color:#666}details{margin:2px 0}summary{cursor:pointer}
.caption{font-size:13px;color:#444;margin:4px 0 16px}svg{background:#fcfcfc;border:1px solid #eee}
code{font-size:12px}
"""
FLAG_COLOURS = {"retransmission": "#d32f2f", "fast-retransmission": "#f57c00",
                "spurious-retransmission": "#7b1fa2", "out-of-order": "#1976d2",
                "duplicate-ack": "#9e9e9e", "lost-segment": "#000", "zero-window": "#5d4037"}


def _e(v) -> str:
    return escape("" if v is None else str(v))


def _table(headers, rows) -> str:
    h = "".join(f"<th>{_e(x)}</th>" for x in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _predicted(backoff: dict, n: int) -> list[float] | None:
    """Attempt times (from the first) the fitted model predicts, for n attempts."""
    m = backoff.get("model") or ""
    base, factor = backoff.get("base_s"), backoff.get("factor")
    if base is None:
        return None
    cap = backoff.get("cap_s")
    t, out = 0.0, [0.0]
    for i in range(n - 1):
        if m == "constant":
            d = base
        elif m == "linear":
            d = base + i * (backoff.get("step_s") or 0)
        elif m == "linear-then-exponential":
            k = backoff.get("linear_steps") or 1
            d = base if i < k else base * (factor or 2) ** (i - k + 1)
        elif m.startswith("exponential"):
            d = base * (factor or 2) ** i
            if "jitter" in m:
                d = d / 2    # the mean of a full-jitter draw; equal jitter would be 3/4
        else:
            return None
        if cap:
            d = min(d, cap)
        t += d
        out.append(t)
    return out


def retry_svg(chain: dict, w: int = 560, h: int = 260) -> str:
    """Attempt time against attempt number, with the fitted backoff curve."""
    att = chain["attempts"]
    t0 = att[0]["ts"]
    xs = [a["ts"] - t0 for a in att]
    pred = _predicted(chain["backoff"], len(att))
    if chain["backoff"].get("excludes_retry_after"):
        pred = None   # the model fits the client's own delays only; the caption says so
    tmax = max(xs + (pred or [])) or 1.0
    n = len(att)
    pl, pr, pt, pb = 50, 20, 20, 40

    def X(i):
        return pl + (w - pl - pr) * (i / max(n - 1, 1))

    def Y(t):
        return h - pb - (h - pt - pb) * (t / tmax)
    parts = [f'<svg class="retry" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
             f'xmlns="http://www.w3.org/2000/svg">',
             f'<line x1="{pl}" y1="{h - pb}" x2="{w - pr}" y2="{h - pb}" stroke="#999"/>',
             f'<line x1="{pl}" y1="{pt}" x2="{pl}" y2="{h - pb}" stroke="#999"/>',
             f'<text x="{(w + pl) / 2}" y="{h - 8}" text-anchor="middle" font-size="12">'
             f'attempt number</text>',
             f'<text x="12" y="{(h) / 2}" font-size="12" transform="rotate(-90 12 {h / 2})" '
             f'text-anchor="middle">seconds since the first attempt</text>',
             f'<text x="{pl - 4}" y="{pt + 4}" text-anchor="end" font-size="11">{tmax:.2f}</text>',
             f'<text x="{pl - 4}" y="{h - pb}" text-anchor="end" font-size="11">0</text>']
    for i in range(n):
        parts.append(f'<text x="{X(i):.1f}" y="{h - pb + 14}" text-anchor="middle" '
                     f'font-size="11">{i + 1}</text>')
    if pred:
        pts = " ".join(f"{X(i):.1f},{Y(t):.1f}" for i, t in enumerate(pred))
        parts.append(f'<polyline class="fit" points="{pts}" fill="none" stroke="#1976d2" '
                     f'stroke-dasharray="5,3" stroke-width="2"/>')
    pts = " ".join(f"{X(i):.1f},{Y(t):.1f}" for i, t in enumerate(xs))
    parts.append(f'<polyline points="{pts}" fill="none" stroke="#d32f2f" stroke-width="1"/>')
    for i, (t, a) in enumerate(zip(xs, att)):
        ok = str(a.get("outcome")) in ("200", "201", "204", "answered", "connected")
        parts.append(f'<circle class="attempt" cx="{X(i):.1f}" cy="{Y(t):.1f}" r="5" '
                     f'fill="{"#2e7d32" if ok else "#d32f2f"}"><title>attempt {i + 1}: '
                     f'{_e(a.get("outcome"))} at +{t:.3f} s (frame {_e(a.get("frame"))})'
                     f'</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def caption(chain: dict) -> str:
    b = chain["backoff"]
    m = b.get("model") or "none"
    words = {"constant": "a constant delay", "linear": "a linearly growing delay",
             "exponential": "exponential backoff",
             "linear-then-exponential": "Linux's SYN backoff: equal delays, then doubling",
             "exponential-full-jitter": "exponential backoff with full jitter",
             "exponential-equal-jitter": "exponential backoff with equal jitter",
             "decorrelated-jitter": "decorrelated jitter (each delay drawn up to 3x the last)",
             "irregular": "no recognisable backoff", "single": "a single retry"}.get(m, m)
    bits = [words]
    if b.get("base_s") is not None:
        bits.append(f"base {b['base_s']:.3f} s")
    if b.get("factor") not in (None, 1.0):
        bits.append(f"factor {b['factor']}")
    if b.get("cap_s"):
        bits.append(f"cap {b['cap_s']:.3f} s")
    iv = ", ".join(f"{x:.3f}" for x in chain["intervals_s"])
    s = (f"The client retried {len(chain['attempts']) - 1} time(s) ({iv} s apart): "
         f"{', '.join(bits)} (confidence {b.get('confidence', 0):.2f}); "
         f"{'it succeeded' if chain['succeeded'] else 'it gave up'}.")
    if chain.get("retry_after_s") is not None:
        s += (f" The server asked to wait {chain['retry_after_s']} s (Retry-After): "
              f"{'honoured' if chain.get('retry_after_honoured') else 'ignored'}.")
    if b.get("excludes_retry_after"):
        s += " The model is fitted on the client's own delays (not the Retry-After wait)."
    if chain.get("warnings"):
        s += " Warnings: " + ", ".join(chain["warnings"]) + "."
    return s + " Red dots failed, green succeeded; the dashed line is the fitted model."


def breaker_svg(b: dict, w: int = 560, h: int = 60) -> str:
    tr = b["transitions"]
    t0, t1 = tr[0]["ts"], tr[-1]["ts"]
    span = (t1 - t0) or 1.0
    colours = {"open": "#d32f2f", "half-open": "#f9a825", "closed": "#2e7d32"}
    parts = [f'<svg class="breaker" width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">']
    for a, nxt in zip(tr, tr[1:] + [None]):
        x0 = 10 + (w - 20) * (a["ts"] - t0) / span
        x1 = 10 + (w - 20) * ((nxt["ts"] if nxt else t1) - t0) / span
        parts.append(f'<rect x="{x0:.1f}" y="10" width="{max(x1 - x0, 3):.1f}" height="24" '
                     f'fill="{colours.get(a["state"], "#999")}"><title>{_e(a["state"])} at '
                     f'+{a["ts"] - t0:.3f} s</title></rect>')
    parts.append(f'<text x="10" y="52" font-size="11">0 s</text><text x="{w - 10}" y="52" '
                 f'font-size="11" text-anchor="end">{span:.2f} s</text></svg>')
    return "".join(parts)


def retrans_svg(points: list, conns: list, w: int = 1000) -> str:
    """points: (ts, conn, flag)."""
    ids = sorted({p[1] for p in points}, key=str)[:40]
    if not ids:
        return "<p>No TCP analysis flags.</p>"
    row = {c: i for i, c in enumerate(ids)}
    h = 30 + 16 * len(ids)
    t0 = min(p[0] for p in points)
    span = (max(p[0] for p in points) - t0) or 1.0
    parts = [f'<svg class="retrans" width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">']
    for c, i in row.items():
        parts.append(f'<text x="4" y="{22 + 16 * i}" font-size="11">conn {_e(c)}</text>')
    for ts, c, flag in points:
        if c not in row:
            continue
        x = 80 + (w - 100) * (ts - t0) / span
        parts.append(f'<circle cx="{x:.1f}" cy="{18 + 16 * row[c]}" r="3" '
                     f'fill="{FLAG_COLOURS.get(flag, "#607d8b")}"><title>{_e(flag)} '
                     f'+{ts - t0:.3f} s</title></circle>')
    parts.append(f'<text x="80" y="{h - 4}" font-size="11">0 s</text><text x="{w - 20}" '
                 f'y="{h - 4}" font-size="11" text-anchor="end">{span:.2f} s</text></svg>')
    legend = " ".join(f'<span style="color:{c}">● {k}</span>' for k, c in FLAG_COLOURS.items())
    return "".join(parts) + f'<div class="caption">{legend}</div>'


def render(path: str, res, retry_records: list, points: list, packets: list,
           max_frames: int) -> str:
    s = res.summary.to_record()
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>dissect report: "
           f"{_e(path)}</title><style>{CSS}</style></head><body>",
           f"<h1>dissect report: {_e(path)}</h1>",
           f"<p>{s['frames']} frames, {human_bytes(s['bytes_wire'])} on the wire, "
           f"{s['duration_s']:.3f} s, {len(res.connections)} connections"
           f"{', error: ' + _e(res.error) if res.error else ''}.</p>"]
    out.append("<h2>Traffic by OSI layer</h2>" + _table(
        ["layer", "packets", "bytes", "protocols"],
        [[f"L{r['osi']} {r['layer']}", r["packets"], human_bytes(r["bytes"]),
          ", ".join(r["protocols"])] for r in s["layers"]]))
    out.append("<h2>Protocol hierarchy</h2>" + _table(
        ["protocol", "OSI", "packets", "bytes"],
        [["\u00a0\u00a0" * r["path"].count("/") + r["protocol"], f"L{r['osi']}", r["packets"],
          human_bytes(r["bytes"])] for r in s["hierarchy"]]))
    chains = [r for r in retry_records if r["type"] == "retry"]
    brk = [r for r in retry_records if r["type"] == "breaker"]
    out.append(f"<h2>Retry chains ({len(chains)})</h2>")
    if not chains:
        out.append("<p>No retries found.</p>")
    for i, c in enumerate(chains, 1):
        out.append(f"<h3>Chain {i}: {_e(c['kind'])} {_e(c['key'])} — {_e(c['client'])} → "
                   f"{_e(c['server'])}</h3>" + retry_svg(c) +
                   f'<div class="caption">{_e(caption(c))}</div>')
    out.append(f"<h2>Circuit breakers ({len(brk)})</h2>")
    for b in brk:
        out.append(f"<p>{_e(b['client'])} → {_e(b['server'])}: opened after "
                   f"{_e(b['failure_threshold'])} failures, open about {b['open_s']:.3f} s. "
                   f"Green closed, red open, yellow half-open.</p>" + breaker_svg(b))
    out.append("<h2>Retransmission timeline</h2>" + retrans_svg(points, res.connections))
    out.append("<h2>Connections</h2>" + _table(
        ["id", "proto", "client", "server", "state", "history", "packets c/s", "app"],
        [[c["id"], c["proto"], f"{c['client']['ip']}:{c['client']['port']}",
          f"{c['server']['ip']}:{c['server']['port']}", c.get("state"), c.get("history"),
          f"{c['packets']['client']}/{c['packets']['server']}", c.get("app")]
         for c in res.connections[:500]]))
    out.append(f"<h2>Packets (first {len(packets)} of {s['frames']}; --max-frames to change)</h2>")
    for fr, layers, flags in packets:
        out.append(f"<details><summary>Frame {fr.number} — {fr.wirelen} bytes — "
                   f"{_e(' / '.join(l.protocol for l in layers))}"
                   f"{' [' + _e(', '.join(flags)) + ']' if flags else ''}</summary>")
        for osi in sorted({int(l.osi) for l in layers}, reverse=True):
            out.append(f"<details><summary class='L{osi}'>L{osi} {Osi(osi).label}</summary><ul>")
            for lay in (l for l in layers if int(l.osi) == osi):
                for f in lay.fields:
                    v = f.value.hex() if isinstance(f.value, (bytes, bytearray)) else f.value
                    out.append(f"<li><code>{_e(lay.protocol)}.{_e(f.name)} = "
                               f"{_e(str(v)[:200])}</code> <small>@{f.offset}+{f.length}"
                               f"</small></li>")
                for a in lay.anomalies:
                    out.append(f"<li>anomaly: {_e(a)}</li>")
            out.append("</ul></details>")
        out.append("</details>")
    out.append("<script>document.body.setAttribute('data-rendered', String("
               "document.querySelectorAll('svg').length));</script></body></html>")
    return "\n".join(out)
