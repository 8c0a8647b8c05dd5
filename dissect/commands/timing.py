"""``dissect timing``: where each transaction spent its time, layer by layer."""

from __future__ import annotations

import click


@click.command("timing")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text",
              show_default=True)
@click.option("--slowest", type=click.IntRange(1, None), default=None, metavar="N",
              help="Only the N slowest transactions (by total time).")
def timing(file, fmt, slowest):
    """Per transaction (HTTP, gRPC, SMTP, FTP, POP3, IMAP, DNS, TLS exchanges): a waterfall
    of TCP handshake (L4), TLS handshake (L5/L6), request, server wait and transfer (L7)
    and teardown (L4), with the slowest stage named."""
    from dissect.analysis.findings import collect
    from dissect.analysis.findings.timing import timing_records
    from dissect.cli import Out, _finish
    from dissect.report import jsonl
    from dissect.report.findings import render_timing
    out = Out()
    res, table = collect(file)
    recs = timing_records(res, table)
    if slowest is not None:
        recs = sorted(recs, key=lambda r: -r["total_s"])[:slowest]
    if fmt == "jsonl":
        for r in recs:
            out.line(jsonl.dumps(r))
    else:
        out.line(render_timing(recs))
    _finish(res, out)
