"""``dissect craft handshake|udp`` and ``dissect capture`` - option parsing and wiring only.

Refusals come first and before any socket: a non-loopback destination without
--allow-remote (RefusedError), missing privileges (PrivilegeError), an existing output
file without --force (RefusedError). The top-level CLI maps them to exit codes.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import click

from dissect.errors import RefusedError

CTX = {"help_option_names": ["-h", "--help"]}


@click.group("craft", context_settings=CTX)
def craft() -> None:
    """Craft packets with Scapy: a real TCP handshake or UDP exchange against a kernel
    listener on loopback (needs root), or a complete exchange built offline (no root)."""


def _request(app_opts: dict, payload: str | None, payload_hex: str | None, dst: str, port: int):
    from dissect.craft.dialogue import build_request
    chosen = [k for k, v in app_opts.items() if v is not None]
    if payload is not None:
        chosen.append("payload")
    if payload_hex is not None:
        chosen.append("payload-hex")
    if len(chosen) > 1:
        raise click.UsageError(f"choose one of --http/--ftp/--smtp/--payload/--payload-hex, "
                               f"not {' and '.join('--' + c for c in chosen)}")
    raw = None
    if payload_hex is not None:
        try:
            raw = bytes.fromhex(payload_hex.replace(":", "").replace(" ", ""))
        except ValueError:
            raise click.UsageError(f"--payload-hex is not hex: {payload_hex!r}") from None
    elif payload is not None:
        raw = payload.encode("utf-8")
    app = next((k for k, v in app_opts.items() if v is not None), None) or "raw"
    if app == "raw" and not raw:
        return "raw", None
    try:
        return app, build_request(app, app_opts.get(app), raw, dst, port)
    except ValueError as e:
        raise click.UsageError(str(e)) from None


def _ep(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _check_out(out: str | None, force: bool) -> None:
    if out is not None and os.path.exists(out) and not force:
        raise RefusedError(f"{out} exists; use --force to overwrite it", protocol="craft")
    if out is not None and not Path(out).resolve().parent.is_dir():
        raise click.UsageError(f"{Path(out).parent} is not a directory")


def _copy_capture(src: Path, out: str, force: bool) -> int:
    from dissect.io.capture import CaptureReader
    from dissect.io.writer import PcapWriter
    n = 0
    with CaptureReader(str(src)) as r:
        frames = list(r)
    lt = frames[0].linktype if frames else 1
    with PcapWriter(out, lt, force=force) as w:
        for fr in frames:
            w.write(fr.ts, fr.data, fr.wirelen)
            n += 1
    return n


def _show(pcap: Path, client: tuple[str, int], head: list[str], brief: bool,
          colour: bool) -> None:
    from dissect.craft.render import frame_reports, ladder
    from dissect.io.capture import read_frames
    frames = list(read_frames(str(pcap)))
    for line in head:
        click.echo(line)
    click.echo("")
    if not brief:
        for rep in frame_reports(str(pcap), colour):
            click.echo(rep)
            click.echo("")
    click.echo("Exchange (absolute sequence numbers)")
    click.echo(ladder(frames, client))


def _common(f):
    opts = [
        click.option("--dst", default="127.0.0.1", show_default=True,
                     help="Destination address (loopback only unless --allow-remote)."),
        click.option("--dport", type=click.IntRange(1, 65535), default=None,
                     help="Destination port (live: required; offline: the protocol's port)."),
        click.option("--sport", type=click.IntRange(1, 65535), default=None,
                     help="Source port (default: a free ephemeral port)."),
        click.option("--listen", is_flag=True,
                     help="Start a real listener on --dport and run everything in a private "
                          "network namespace."),
        click.option("--payload", default=None, help="Payload as text."),
        click.option("--payload-hex", default=None, help="Payload as hex bytes."),
        click.option("-w", "--write", "out", type=click.Path(dir_okay=False), default=None,
                     help="Write the exchange to this pcap file."),
        click.option("--force", is_flag=True, help="Overwrite the -w file if it exists."),
        click.option("--offline", is_flag=True,
                     help="Build the complete exchange without sending anything (no root)."),
        click.option("--seed", type=int, default=None,
                     help="Seed for ports, sequence numbers and IP IDs (offline default 0)."),
        click.option("--allow-remote", is_flag=True,
                     help="Allow a non-loopback destination (you must be allowed to probe it)."),
        click.option("--brief", is_flag=True, help="Only the exchange, not every field."),
        click.option("--color/--no-color", "color", default=None),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@craft.command("handshake", context_settings=CTX)
@_common
@click.option("--http", "http", default=None, metavar="'METHOD TARGET'",
              help="Send an HTTP request, e.g. 'GET /'.")
@click.option("--ftp", "ftp", default=None, metavar="COMMAND", help="Send an FTP command.")
@click.option("--smtp", "smtp", default=None, metavar="COMMAND", help="Send an SMTP command.")
@click.option("--teardown", type=click.Choice(["fin", "rst"]), default="fin", show_default=True)
def handshake(dst, dport, sport, listen, payload, payload_hex, out, force, offline, seed,
              allow_remote, brief, color, http, ftp, smtp, teardown):
    """TCP: SYN, the kernel's SYN-ACK, ACK, an optional request and the server's answer,
    then a FIN or RST teardown - captured, shown layer by layer and as a ladder."""
    from dissect.craft.offline import DEFAULT_PORTS, tcp_exchange
    from dissect.report.text import use_colour
    colour = use_colour(force=color)
    app_opts = {"http": http, "ftp": ftp, "smtp": smtp}
    if offline:
        app, req = _request(app_opts, payload, payload_hex, dst, dport or
                            DEFAULT_PORTS[next((k for k, v in app_opts.items() if v), "raw")])
        if listen:
            raise click.UsageError("--offline sends nothing, so --listen makes no sense")
        _check_out(out, force)
        c = tcp_exchange(app=app, request=req.data if req else b"", dst=dst, dport=dport,
                         sport=sport, teardown=teardown, seed=seed or 0)
        head = [(f"Crafted offline (nothing sent): TCP {_ep(c.src, c.sport)} → "
                 f"{_ep(c.dst, c.dport)}, {app if req else 'no payload'}, "
                 f"{teardown.upper()} teardown, seed {seed or 0}"),
                f"  client ISN {c.isn_client}, server ISN {c.isn_server}"]
        _offline_finish(c, out, force, head, brief, colour)
        return
    if dport is None:
        raise click.UsageError("--dport is required (or use --offline)")
    from dissect.craft.live import preflight
    preflight(proto="tcp", dst=dst, listen=listen, allow_remote=allow_remote,
              command="craft handshake")
    app, req = _request(app_opts, payload, payload_hex, dst, dport)
    _check_out(out, force)
    _live("tcp", dst, dport, sport, app, req, teardown, listen, allow_remote, seed, out,
          force, brief, colour)


@craft.command("udp", context_settings=CTX)
@_common
def udp(dst, dport, sport, listen, payload, payload_hex, out, force, offline, seed,
        allow_remote, brief, color):
    """UDP: one datagram to a real listener (--listen starts a UDP echo server) and the
    answer back - captured and shown layer by layer."""
    from dissect.craft.offline import udp_exchange
    from dissect.report.text import use_colour
    colour = use_colour(force=color)
    _app, req = _request({}, payload, payload_hex, dst, dport or 7)
    if req is None:
        raise click.UsageError("give the datagram with --payload or --payload-hex")
    if offline:
        if listen:
            raise click.UsageError("--offline sends nothing, so --listen makes no sense")
        _check_out(out, force)
        c = udp_exchange(payload=req.data, dst=dst, dport=dport, sport=sport, seed=seed or 0)
        head = [(f"Crafted offline (nothing sent): UDP {_ep(c.src, c.sport)} → "
                 f"{_ep(c.dst, c.dport)}, {len(req.data)} bytes echoed, seed {seed or 0}")]
        _offline_finish(c, out, force, head, brief, colour)
        return
    if dport is None:
        raise click.UsageError("--dport is required (or use --offline)")
    from dissect.craft.live import preflight
    preflight(proto="udp", dst=dst, listen=listen, allow_remote=allow_remote,
              command="craft udp")
    _check_out(out, force)
    _live("udp", dst, dport, sport, "raw", req, "fin", listen, allow_remote, seed, out, force,
          brief, colour)


def _offline_finish(c, out, force, head, brief, colour) -> None:
    from dissect.io.writer import PcapWriter
    tmp = None
    try:
        if out is None:
            tmp = tempfile.mkdtemp(prefix="dissect-craft-")
            path = os.path.join(tmp, "offline.pcap")
        else:
            path = out
        with PcapWriter(path, 1, force=force or out is None) as w:
            for ts, data in c.frames:
                w.write(ts, data)
        _show(Path(path), (c.src, c.sport), head, brief, colour)
        if out is not None:
            click.echo(f"\nWrote {out} ({len(c.frames)} frames)")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


OUTCOMES = {
    "closed": "connection established, {answer}closed with FIN by the {closed_by}",
    "reset": "connection established, {answer}torn down with RST by the client",
    "answered": "the server answered ({answer})",
}


def _live(proto, dst, dport, sport, app, req, teardown, listen, allow_remote, seed, out,
          force, brief, colour) -> None:
    from dissect.craft.live import run_live
    from dissect.craft.safety import CraftError
    with run_live(proto=proto, dst=dst, dport=dport, sport=sport, app=app,
                  request=req.data if req else b"", teardown=teardown, listen=listen,
                  allow_remote=allow_remote, seed=seed,
                  command=f"craft {'handshake' if proto == 'tcp' else 'udp'}") as r:
        res, spec = r.result, r.spec
        what = f"{proto.upper()} {_ep(spec['src'], spec['sport'])} → {_ep(dst, dport)}"
        head = [f"Crafted with Scapy and sent: {what}, in the {r.where}"]
        if r.listener:
            head.append(f"  listener: {r.listener} on {_ep(dst, dport)}")
        if proto == "tcp" and "isn_server" in res:
            head.append(f"  client ISN {res['isn_client']}, server ISN {res['isn_server']}; the "
                        f"SYN-ACK acknowledged {res['synack_ack']} (client ISN+1 = "
                        f"{(res['isn_client'] + 1) & 0xFFFFFFFF})")
        _show(r.pcap, (spec["src"], spec["sport"]), head, brief, colour)
        outcome = res.get("outcome")
        answer = ""
        if res.get("answer") is not None and proto == "tcp":
            answer = f"{len(res['answer'].encode())} bytes answered, "
        text = OUTCOMES.get(outcome, "{outcome}").format(
            answer=answer, closed_by=res.get("closed_by", "client"), outcome=outcome,
        ) if outcome != "answered" else f"the server answered ({len(res['answer'])} bytes" + (
            ", an exact echo)" if res.get("echoed") else ")")
        click.echo(f"\nOutcome: {text}")
        for note in res.get("notes") or ():
            click.echo(f"  note: {note}")
        if out is not None:
            n = _copy_capture(r.pcap, out, force)
            click.echo(f"Wrote {out} ({n} frames)")
    if outcome not in ("closed", "reset", "answered"):
        raise CraftError(f"the exchange did not complete ({outcome}): "
                         + "; ".join(res.get("notes") or ()), protocol="craft")


@click.command("capture", context_settings=CTX)
@click.option("-i", "--interface", "iface", default="lo", show_default=True)
@click.option("-f", "--filter", "bpf", default=None, metavar="BPF",
              help="Capture filter in tcpdump syntax, e.g. 'tcp port 8080'.")
@click.option("-c", "--count", type=click.IntRange(1), default=None, help="Stop after N packets.")
@click.option("--duration", type=click.FloatRange(0, min_open=True), default=None,
              help="Stop after S seconds.")
@click.option("-w", "--write", "out", type=click.Path(dir_okay=False), default=None,
              help="Write the packets to this pcap file.")
@click.option("--force", is_flag=True, help="Overwrite the -w file if it exists.")
@click.option("--quiet", is_flag=True, help="No per-packet lines and no progress line.")
@click.option("--color/--no-color", "color", default=None)
def capture(iface, bpf, count, duration, out, force, quiet, color):
    """Live capture (needs root or CAP_NET_RAW): one layer-annotated line per packet,
    a progress line on stderr, the packets written with -w. Ctrl-C stops cleanly."""
    from dissect.craft.capture import capture as run_capture
    from dissect.craft.capture import progress_line
    from dissect.craft.render import packet_line
    from dissect.protocols.frame import dissect_frame
    from dissect.report.text import use_colour
    colour = use_colour(force=color)
    first: list[float] = []

    def on_frame(fr):
        if not first:
            first.append(fr.ts)
        click.echo(packet_line(fr, dissect_frame(fr), first[0], colour))

    tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty() and not quiet
    stats = run_capture(iface, bpf=bpf, count=count, duration=duration, out=out, force=force,
                        on_frame=None if quiet else on_frame,
                        progress=progress_line if tty else None)
    if tty:
        sys.stderr.write("\r\x1b[K")
    click.echo(f"{stats.packets} packets, {stats.bytes} bytes in {stats.seconds:.2f} s on "
               f"{iface}" + (f" (stopped: {stats.stopped_by})" if stats.stopped_by else "")
               + (f"; wrote {out}" if out else ""), err=quiet or not sys.stdout.isatty())
