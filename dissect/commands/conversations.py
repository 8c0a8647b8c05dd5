"""``dissect conversations``: the comparison table per conversation; ``dissect cleartext``:
credentials and secrets visible on the wire."""

from __future__ import annotations

import click


@click.command("conversations")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text",
              show_default=True)
@click.option("--evidence/--no-evidence", default=True, show_default=True,
              help="With text: list the evidence for each column under the table.")
def conversations(file, fmt, evidence):
    """Per conversation: communication model (client-server / peer-to-peer), connection
    type (stateless request-response / persistent), transport, reliability seen and use,
    each with its evidence."""
    from dissect.analysis.findings import collect
    from dissect.analysis.findings.conversations import conversation_records
    from dissect.cli import Out, _finish
    from dissect.report import jsonl
    from dissect.report.findings import render_conversations
    out = Out()
    res, table = collect(file)
    recs = conversation_records(res, table)
    if fmt == "jsonl":
        for r in recs:
            out.line(jsonl.dumps(r))
    else:
        out.line(render_conversations(recs, evidence=evidence))
    _finish(res, out)


@click.command("cleartext")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text",
              show_default=True)
@click.option("--show-secrets", is_flag=True,
              help="Show passwords, tokens and cookies in full (masked by default).")
def cleartext(file, fmt, show_secrets):
    """Credentials and secrets visible on the wire (FTP/POP3/IMAP/SMTP logins, HTTP Basic
    and Bearer, cookies), FTP data in the clear, STARTTLS offered but not used, weak TLS."""
    from dissect.analysis.findings.cleartext import cleartext_findings
    from dissect.cli import Out, _finish
    from dissect.engine import Engine
    from dissect.report import jsonl
    from dissect.report.findings import render_findings
    out = Out()
    res = Engine(file).run()
    recs = cleartext_findings(res, show_secrets=show_secrets)
    if fmt == "jsonl":
        for r in recs:
            out.line(jsonl.dumps(r))
    else:
        out.line(render_findings(recs))
    _finish(res, out)
