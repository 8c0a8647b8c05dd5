"""``dissect grpc``: gRPC calls and their messages, decoded without a schema (as
``protoc --decode_raw`` does) or with field names from ``--proto FILE.proto``."""

from __future__ import annotations

import click


@click.command("grpc")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--proto", "proto", type=click.Path(dir_okay=False), default=None,
              help="A .proto file: decode messages with its field names.")
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text",
              show_default=True)
def grpc(file, proto, fmt):
    """Each gRPC call (service, method, status, messages each way) with its messages
    decoded."""
    from dissect.analysis.findings.protobuf import (ProtobufError, decode_grpc_message,
                                                    format_raw, load_schema)
    from dissect.cli import Out, _finish
    from dissect.engine import Engine
    from dissect.report import jsonl
    from dissect.report.text import safe
    schema = load_schema(proto) if proto else None
    res = Engine(file).run()
    out = Out()
    calls = [r for r in res.records if r.get("type") == "grpc"]
    for c in calls:
        decoded = []
        for m in c.get("messages") or []:
            data = bytes.fromhex(m.get("data") or "")
            entry = {"direction": m.get("direction"), "length": m.get("length")}
            if m.get("compressed"):
                entry["error"] = "compressed message (not decoded)"
            else:
                try:
                    entry |= decode_grpc_message(data, schema, c.get("path"),
                                                 response=m.get("direction") in ("response", "server"))
                except ProtobufError as e:
                    entry["error"] = str(e)
            decoded.append(entry)
        if fmt == "jsonl":
            out.line(jsonl.dumps(dict(c, decoded=decoded)))
            continue
        out.line(f"conn {c.get('conn')}  {safe(c.get('path'))}  status {c.get('grpc_status')}"
                 f"{' ' + safe(c.get('grpc_message')) if c.get('grpc_message') else ''}  "
                 f"messages {c.get('requests')} -> / <- {c.get('responses')}")
        for d in decoded:
            arrow = "->" if d["direction"] in ("request", "client") else "<-"
            if "error" in d:
                out.line(f"  {arrow} {d['length']} bytes: {d['error']}")
            elif d.get("type_name"):
                out.line(f"  {arrow} {d['type_name']} {safe(d['fields'])}")
            else:
                out.line(f"  {arrow} raw ({d['length']} bytes)")
                for line in format_raw(d["raw"], 2):
                    out.line("    " + safe(line))
    if not calls and fmt == "text":
        out.line("no gRPC calls")
    _finish(res, out)
