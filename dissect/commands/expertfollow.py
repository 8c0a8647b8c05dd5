"""``dissect expert`` and ``dissect follow`` (wiring only)."""

from __future__ import annotations

import click


@click.command("expert")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text",
              show_default=True)
def expert(file, fmt):
    """Anomalies and TCP analysis grouped by severity (Error, Warning, Note, Chat), as
    Wireshark's Expert Info does, with counts and first frames."""
    from dissect.cli import Out, _finish
    from dissect.engine import Engine
    from dissect.report import jsonl
    from dissect.report.expertinfo import ExpertTable
    t = ExpertTable()
    res = Engine(file, on_frame=t.on_frame).run()
    t.finish(res)
    out = Out()
    if fmt == "jsonl":
        for r in t.records():
            out.line(jsonl.dumps(r))
    else:
        out.line(t.render())
    _finish(res, out)


@click.command("follow")
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("conn")
@click.option("--hex", "hexdump", is_flag=True, help="Hex dump instead of text.")
def follow(file, conn, hexdump):
    """Both directions of TCP connection CONN (as in 'dissect flows'), reassembled: each
    byte once, in order, gaps named; control characters escaped."""
    from dissect.analysis.reassembly import StreamReassembler
    from dissect.cli import Out, _finish
    from dissect.engine import Engine
    from dissect.report.expertinfo import follow as render
    want = int(conn) if conn.isdigit() else conn
    reasm = StreamReassembler()
    items = []
    seen = []

    def on_frame(fr, d, v):
        t = d.transport
        if v.conn == want and t is not None and hasattr(t, "seq"):
            seen.append(fr.number)
            items.extend((it.direction, it.kind, it.value) for it in reasm.push(v.direction, t))
    res = Engine(file, on_frame=on_frame).run()
    items.extend((it.direction, it.kind, it.value) for it in reasm.close())
    if not seen:
        click.echo(f"dissect: error: {file}: no TCP connection {conn}", err=True)
        raise SystemExit(2)
    out = Out()
    out.line(render(items, hexdump))
    _finish(res, out)
