"""``dissect retries``: retry chains with their intervals and backoff model, warnings, and
circuit-breaker timelines."""

from __future__ import annotations

import click

DOT, LINE = "●", "─"


def timeline(attempts, width: int = 40) -> str:
    """Attempts as dots on a line scaled to the chain's duration."""
    t0, t1 = attempts[0]["ts"], attempts[-1]["ts"]
    span = (t1 - t0) or 1.0
    cells = [LINE] * (width + 1)
    for a in attempts:
        cells[round((a["ts"] - t0) / span * width)] = DOT
    return "".join(cells)


def _model(b):
    m = b["model"]
    parts = [m]
    if b.get("base_s") is not None:
        parts.append(f"base {b['base_s']:.3f}s")
    if b.get("factor") not in (None, 1.0):
        parts.append(f"x{b['factor']}")
    if b.get("cap_s"):
        parts.append(f"cap {b['cap_s']:.3f}s")
    return ", ".join(parts) + f" (confidence {b['confidence']:.2f})"


def summary_line(chains) -> str:
    """How many chains of each kind and backoff model, most first."""
    counts: dict = {}
    for c in chains:
        k = (c["kind"], c["backoff"]["model"])
        counts[k] = counts.get(k, 0) + 1
    parts = [f"{n} {kind} ({model})" for (kind, model), n in
             sorted(counts.items(), key=lambda x: (-x[1], x[0]))]
    return f"{len(chains)} retry chain(s): " + ", ".join(parts)


def render(records, limit: int | None = None) -> str:
    """The chains (the first ``limit`` of them, after a count by kind and model, when
    given), retry storms and circuit breakers."""
    from dissect.report.text import safe
    lines = []
    chains = [r for r in records if r["type"] == "retry"]
    brk = [r for r in records if r["type"] == "breaker"]
    storm = [r for r in records if r["type"] == "retry-storm"]
    if not chains and not brk:
        return "no retry chains and no circuit breakers found"
    more = 0
    if limit is not None and len(chains) > limit:
        lines += [summary_line(chains), ""]
        more = len(chains) - limit
        chains = chains[:limit]
    for i, c in enumerate(chains, 1):
        ok = "succeeded" if c["succeeded"] else "gave up"
        lines.append(f"chain {i}: {c['kind']}  {safe(c['client'])} -> {safe(c['server'])}  "
                     f"{safe(c['key'])}  {len(c['attempts'])} attempts, {ok}")
        lines.append(f"  {timeline(c['attempts'])}  intervals "
                     + ", ".join(f"{x:.3f}" for x in c["intervals_s"]) + " s")
        lines.append(f"  backoff: {_model(c['backoff'])}")
        lines.append("  attempts: " + ", ".join(
            f"#{a['frame']} {safe(a['outcome'])}" for a in c["attempts"]))
        if c.get("retry_after_s") is not None:
            lines.append(f"  Retry-After {c['retry_after_s']} s "
                         f"{'honoured' if c['retry_after_honoured'] else 'IGNORED'}")
        if c.get("timeout_s") is not None:
            lines.append(f"  client timeout about {c['timeout_s']:.3f} s")
        for w in c["warnings"]:
            lines.append(f"  warning: {w}")
        lines.append("")
    if more:
        lines += [f"... and {more} more chain(s) ('dissect retries' lists all)", ""]
    for st in storm:
        lines.append(f"RETRY STORM: {st['clients']} clients retried {safe(st['server'])} in "
                     f"lockstep ({st['attempts_each']} attempts each, intervals "
                     + ", ".join(f"{x:.3f}" for x in st["intervals_s"])
                     + f" s, first attempts within {st['spread_s'] * 1000:.1f} ms): add jitter")
        lines.append("")
    for b in brk:
        lines.append(f"circuit breaker: {safe(b['client'])} -> {safe(b['server'])}  opened after "
                     f"{b['failure_threshold']} failures, open about {b['open_s']:.3f} s "
                     f"(calls every {b['call_interval_s']:.3f} s)")
        t0 = b["transitions"][0]["ts"]
        for t in b["transitions"]:
            lines.append(f"  {t['ts'] - t0:8.3f} s  frame {t['frame']}  {t['state']}")
        lines.append("")
    return "\n".join(lines).rstrip()


@click.command("retries")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text",
              show_default=True)
def retries(file, fmt):
    """Retry chains (SYN, reconnect, HTTP, DNS) with intervals and backoff model,
    unsafe retries and ignored Retry-After, and circuit-breaker timelines."""
    from dissect.analysis.backoff_chains import detect_path
    from dissect.cli import Out, _finish
    from dissect.report import jsonl
    recs, res = detect_path(file)
    out = Out()
    if fmt == "jsonl":
        for r in recs:
            out.line(jsonl.dumps(r))
    else:
        out.line(render(recs))
    _finish(res, out)
