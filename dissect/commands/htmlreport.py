"""``dissect report FILE -o report.html``: one self-contained HTML report."""

from __future__ import annotations

import os

import click


@click.command("report")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The HTML file to write.")
@click.option("--force", is_flag=True, help="Overwrite the output file.")
@click.option("--max-frames", default=200, show_default=True, type=click.IntRange(0),
              help="Frames shown field by field in the per-packet view.")
def report(file, output, force, max_frames):
    """A self-contained HTML report (no network needed to view it): summary, OSI layers,
    protocol hierarchy, retry chains plotted with their backoff, circuit breakers, a
    retransmission timeline, connections, and an expandable per-packet layer view."""
    from dissect.analysis.backoff_chains import detect
    from dissect.cli import _finish
    from dissect.engine import Engine
    from dissect.errors import RefusedError
    from dissect.protocols.frame import dissect_frame
    from dissect.report.htmlpage import render
    if os.path.exists(output) and not force:
        raise RefusedError(f"{output} exists; use --force to overwrite it")
    points, packets = [], []

    def on_frame(fr, d, v):
        for f in v.flags:
            points.append((fr.ts, v.conn, f))
        if len(packets) < max_frames:
            packets.append((fr, dissect_frame(fr), v.flags))
    res = Engine(file, on_frame=on_frame).run()
    html = render(file, res, detect(res), points, packets, max_frames)
    with open(output, "w", encoding="utf-8") as f:
        f.write(html)
    click.echo(f"wrote {output} ({len(html) // 1024} KB)", err=True)
    _finish(res)
