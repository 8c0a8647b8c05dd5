"""``dissect cascades``: request trees across tiers, amplification, where the time went."""

from __future__ import annotations

import click


def _tree(node, depth, lines):
    from dissect.report.text import safe
    st = node["status"] if node["status"] is not None else "no response"
    lines.append(f"{'  ' * depth}- {safe(node['method'])} {safe(node['target'])} -> "
                 f"{safe(node['server'])}  {st}  {node['duration_s'] * 1000:.1f} ms  "
                 f"frame {node['frame']}{'  (ambiguous parent)' if node['ambiguous'] else ''}")
    for c in node["children"]:
        _tree(c, depth + 1, lines)


def render(records) -> str:
    from dissect.report.text import safe
    if not records:
        return "no cascades (no request caused requests to another tier)"
    lines = []
    for i, r in enumerate(records, 1):
        root = r["root"]
        amp = " -> ".join(map(str, r["amplification"]))
        lines.append(f"cascade {i}: {safe(root['method'])} {safe(root['target'])} from "
                     f"{safe(root['client'])}: amplification {amp}; the delay came from tier "
                     f"{r['delay_tier']}{'; AMBIGUOUS links' if r['ambiguous'] else ''}")
        for t in r["tiers"]:
            lines.append(f"  tier {t['tier']} {safe(t['server'])}: {t['attempts']} attempt(s) "
                         f"{t['statuses']}, own {t['own_s'] * 1000:.1f} ms, waiting on the "
                         f"tier below {t['waiting_s'] * 1000:.1f} ms")
        for n in r["tree"]:
            _tree(n, 1, lines)
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
