"""``dissect flows``: the connection table, and a ladder diagram of one connection."""

from __future__ import annotations

import sys

import click


def _conn_id(value: str):
    return int(value) if value.isdigit() else value


@click.command("flows")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text",
              show_default=True)
@click.option("--ladder", "ladder", default=None, metavar="ID",
              help="Draw a ladder (sequence) diagram of connection ID (as in the table).")
@click.option("--ascii", "ascii_", is_flag=True, help="ASCII instead of Unicode line drawing.")
@click.option("--proto", type=click.Choice(["all", "tcp", "udp"]), default="all",
              show_default=True)
def flows(file, fmt, ladder, ascii_, proto):
    """Connections in FILE: client, server, Zeek state and history, handshake RTT,
    duration, packets and bytes each way, retransmissions, application protocol."""
    from dissect.cli import Out, _finish
    from dissect.engine import Engine
    from dissect.report import jsonl
    from dissect.report.flows import render_flows
    out = Out()
    if ladder is not None:
        from dissect.report.ladder import render_ladder
        want = _conn_id(ladder)
        items = []

        def on_frame(fr, d, v):
            if v.conn == want and d.transport is not None and hasattr(d.transport, "seq"):
                items.append((d.transport, v.flags))
        res = Engine(file, on_frame=on_frame).run()
        conn = next((c for c in res.connections if c["id"] == want), None)
        if conn is None or conn["proto"] != "tcp":
            click.echo(f"dissect: error: {file}: no TCP connection {ladder} "
                       f"({len(res.connections)} connections; see 'dissect flows {file}')",
                       err=True)
            sys.exit(2)
        out.line(render_ladder(conn, items, unicode=not ascii_ and _utf8()))
        _finish(res, out)
        return
    res = Engine(file).run()
    conns = [c for c in res.connections if proto == "all" or c["proto"] == proto]
    if fmt == "jsonl":
        for c in conns:
            out.line(jsonl.dumps(c))
    else:
        out.line(render_flows(conns))
    _finish(res, out)


def _utf8() -> bool:
    enc = (getattr(sys.stdout, "encoding", "") or "").lower()
    return "utf" in enc
