"""``dissect cascades``: request trees across tiers, amplification, where the time went."""

from __future__ import annotations

import click


def _tree(node, depth, lines):
    from dissect.report.text import safe
    st = node["status"] if node["status"] is not None else "no response"
    note = ""
    if node["ambiguous"]:
        note += "  (ambiguous parent)"
    if node.get("confidence") is not None and node["confidence"] < 1:
        note += f"  (link confidence {node['confidence']:g}: nested only within the clock slack)"
    if node.get("short_circuited"):
        note += "  (short-circuited: answered without a call below)"
    lines.append(f"{'  ' * depth}- {safe(node['method'])} {safe(node['target'])} -> "
                 f"{safe(node['server'])}  {safe(st)}  {node['duration_s'] * 1000:.1f} ms  "
                 f"frame {node['frame']}{note}")
    for c in node["children"]:
        _tree(c, depth + 1, lines)


def _breaker(r, t0) -> list[str]:
    from dissect.report.text import safe
    lines = [f"circuit breaker in {safe(r['service'])} (calls to {safe(r['below'])}): "
             f"{r['short_circuited']} request(s) answered without a call below while open; "
             + (f"while closed it made {r['attempts_below_per_request_when_forwarded']:g} "
                f"call(s) below per request" if r["attempts_below_per_request_when_forwarded"]
                is not None else "it never forwarded a request")]
    for x in r["transitions"]:
        lines.append(f"  {x['t'] - t0:9.3f} s  -> {x['to']:9} ({safe(x['reason'])}, "
                     f"frame {x['frame']})")
    for p in r["open_periods"]:
        until = f"{p['until'] - t0:.3f} s" if p["until"] is not None else "the end"
        lines.append(f"  open {p['from'] - t0:.3f} s .. {until}: {p['requests']} request(s) "
                     f"reached {safe(r['service'])}, 0 reached {safe(r['below'])}")
    return lines


def render(records) -> str:
    from dissect.report.text import safe
    cascades = [r for r in records if r.get("type") == "cascade"]
    breakers = [r for r in records if r.get("type") == "cascade-breaker"]
    if not cascades:
        return "no cascades (no request caused requests to another tier)"
    t0 = min(r["root"]["ts"] for r in cascades)
    lines = []
    for i, r in enumerate(cascades, 1):
        root = r["root"]
        amp = " -> ".join(map(str, r["amplification"]))
        weak = r.get("confidence", 1.0)
        weak_note = f"; weakest link confidence {weak:g}" if weak < 1 else ""
        lines.append(f"cascade {i}: {safe(root['method'])} {safe(root['target'])} from "
                     f"{safe(root['client'])} at {root['ts'] - t0:.3f} s: amplification {amp}; "
                     f"the delay came from tier {r['delay_tier']}"
                     f"{'; AMBIGUOUS links' if r['ambiguous'] else ''}{weak_note}")
        for t in r["tiers"]:
            sc = t.get("short_circuited")
            lines.append(f"  tier {t['tier']} {safe(t['server'])}: {t['attempts']} attempt(s) "
                         f"{t['statuses']}, own {t['own_s'] * 1000:.1f} ms, waiting on the "
                         f"tier below {t['waiting_s'] * 1000:.1f} ms"
                         f"{f', {sc} short-circuited' if sc else ''}")
        for n in r["tree"]:
            _tree(n, 1, lines)
        lines.append("")
    for b in breakers:
        lines += _breaker(b, t0)
        lines.append("")
    return "\n".join(lines).rstrip()


@click.command("cascades")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text",
              show_default=True)
def cascades(file, fmt):
    """Rebuild request trees across services (client -> gateway -> backend) and show the
    retry amplification per tier and which tier caused the delay."""
    from dissect.analysis.tiers import cascade_records
    from dissect.cli import Out, _finish
    from dissect.engine import Engine
    from dissect.report import jsonl
    res = Engine(file).run()
    recs = cascade_records(res)
    out = Out()
    if fmt == "jsonl":
        for r in recs:
            out.line(jsonl.dumps(r))
    else:
        out.line(render(recs))
    _finish(res, out)
