"""The ``dissect`` command: option parsing and wiring only (I/O -> core -> report).

Every error dissect raises on purpose carries its exit code (see dissect.errors.ExitCode
and the README); nothing else reaches the user as a traceback.
"""

from __future__ import annotations

import os
import sys

import click

from dissect.analysis.observe import Observer
from dissect.errors import DissectError, ExitCode

FORMATS = click.Choice(["text", "jsonl"])


class FrameSelection(click.ParamType):
    """``1,5-9,20-`` -> predicate over frame numbers."""

    name = "frames"

    def convert(self, value, param, ctx):
        if callable(value):
            return value
        ranges = []
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                if "-" in part:
                    a, b = part.split("-", 1)
                    lo = int(a) if a else 1
                    hi = int(b) if b else None
                else:
                    lo = hi = int(part)
            except ValueError:
                self.fail(f"{part!r} is not a frame number or range (e.g. 1,5-9,20-)", param, ctx)
            if lo < 1 or (hi is not None and hi < lo):
                self.fail(f"{part!r} is not a valid range (frames start at 1)", param, ctx)
            ranges.append((lo, hi))
        if not ranges:
            self.fail("no frames selected", param, ctx)

        def pick(n: int) -> bool:
            return any(lo <= n and (hi is None or n <= hi) for lo, hi in ranges)
        pick.last = None if any(hi is None for _, hi in ranges) else max(hi for _, hi in ranges)
        return pick


class Out:
    """Writes lines to stdout in chunks, stopping quietly if the reader goes away (| head)."""

    CHUNK = 512

    def __init__(self):
        self.closed = False
        self._buf: list[str] = []
        import atexit
        atexit.register(self.flush)

    def line(self, s: str) -> None:
        if self.closed:
            return
        self._buf.append(s)
        if len(self._buf) >= self.CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.closed or not self._buf:
            return
        data = "\n".join(self._buf) + "\n"
        self._buf.clear()
        try:
            sys.stdout.write(data)
            sys.stdout.flush()
        except BrokenPipeError:
            self.closed = True
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except OSError:
                pass


# Set by main() when it runs as the program (not called with arguments from Python): the
# commands that end through _finish then leave with os._exit once their output is flushed,
# skipping the teardown of what the analysis built (on a 1 GB capture, millions of objects
# freed one by one after the last line was written).
_EXIT_FAST = False


def _finish(res, out: Out | None = None) -> None:
    """After output: report capture damage on stderr and exit with its code."""
    if out is not None:
        out.flush()
    code = 0
    if res is not None and res.error is not None:
        click.echo(f"dissect: error: {res.error}", err=True)
        code = res.error.exit_code
    if _EXIT_FAST:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BrokenPipeError:
                pass
        os._exit(code)
    if code:
        sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dissect-osi", prog_name="dissect")
@click.option("--limit", "limits", multiple=True, metavar="NAME=VALUE",
              help="Override a resource limit for this run (see 'dissect limits').")
def cli(limits):
    """dissect: take captures apart layer by layer (physical to application) and explain
    what happened: TCP analysis, application protocols, retries and backoff."""
    if limits:
        from dissect.limits import apply
        apply(limits)


@cli.command("speedups")
def speedups_cmd():
    """Which per-packet modules run compiled (scripts/build_speedups.py builds them;
    DISSECT_PURE_PYTHON=1 turns them off; an edited module runs as Python until rebuilt)."""
    from dissect.report.text import table
    from dissect.speedups import status
    click.echo(table([[m, s] for m, s in status().items()], ["module", "state"]))


@cli.command("limits")
def limits_cmd():
    """The named resource limits and their current values."""
    from dissect.limits import LIMITS, current
    from dissect.report.text import table
    vals = current()
    click.echo(table([[n, vals[n], LIMITS[n][0]] for n in LIMITS], ["limit", "value", "what"]))


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl", "parquet"]), default="text",
              show_default=True,
              help="text report, JSON Lines records (packet records, then connections, "
                   "application records, and a summary last), or Parquet tables (-o DIR).")
@click.option("--packets/--no-packets", default=True, show_default=True,
              help="With --format jsonl/parquet: one packet record per frame.")
@click.option("--color/--no-color", "color", default=None,
              help="Colour by OSI layer (default: when stdout is a terminal and NO_COLOR is unset).")
@click.option("-j", "--jobs", type=click.IntRange(1, 256), default=None,
              help="Processes (default: all cores). A large capture is split by connection; "
                   "results are the same as with one.")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="local processes, or a Dask distributed cluster.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="With --engine dask: the scheduler (default: a LocalCluster).")
@click.option("-o", "--output", "outdir", type=click.Path(file_okay=False), default=None,
              help="With --format parquet: the directory for the tables.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def analyze(files, fmt, packets, color, jobs, engine, scheduler, outdir, quiet):
    """The main job: a layer-annotated report of FILES (pcap, pcapng, gzip either; several
    files, or a quoted pattern like 'captures/*.pcap', are analysed as one capture)."""
    from dissect.parallel import expand, run_any
    from dissect.report import jsonl
    from dissect.report.progress import Progress
    from dissect.report.text import use_colour
    if fmt == "parquet" and not outdir:
        raise click.UsageError("--format parquet needs -o DIR")
    paths = expand(files)
    out = Out()
    sink = pq = None
    if fmt == "parquet":
        from dissect.report.parquet import ParquetOut
        pq = ParquetOut(outdir)
        sink = pq.line if packets else None
    elif fmt == "jsonl" and packets:
        sink = out.line
    from dissect.engine import gc_paused
    # the cycle collector stays off from the analysis to the exit: re-enabled in between,
    # its first pass walked every object the analysis had made (gen 0 holds all of them)
    with gc_paused():
        bar = Progress(quiet=quiet)
        try:
            # text and JSON Lines read the records once (a streamed run: they wait on
            # disk, not in memory); Parquet's writer reads them several times
            res = run_any(paths, jobs=jobs, engine=engine, scheduler=scheduler, on_line=sink,
                          progress=bar.update, slowest=_slowest_rows() if fmt == "text" else 0,
                          stream=fmt != "parquet")
        finally:
            bar.close()
        if fmt == "jsonl":
            from dissect.engine import finish_stream
            finish_stream(res, [_JsonlLines(out)])
            out.line(jsonl.dumps(res.summary.to_record() | {"file": ", ".join(files),
                     "error": str(res.error) if res.error else None}))
        elif fmt == "parquet":
            from dissect.analysis.backoff_chains import detect
            pq.finish(res, detect(res))
        else:
            from dissect.report.terminal import render_analyze
            text = render_analyze(res, colour=use_colour(force=color),
                                  sections=_app_sections(res))
            out.line(text)
        _finish(res, out)


class _JsonlLines(Observer):
    """Connection and application records as JSON lines, in the run's one pass over them
    (an observer, dissect.analysis.observe)."""

    def __init__(self, out: Out):
        from dissect.report.jsonl import dumps
        self._line, self._dumps = out.line, dumps

    def conn(self, c: dict) -> None:
        self._line(self._dumps(c))

    def record(self, r: dict) -> None:
        self._line(self._dumps(r))


def _slowest_rows() -> int:
    """Rows of the report's slowest-transactions table (0 without the findings module)."""
    try:
        from dissect.report.sections import SLOWEST
    except ImportError:
        return 0
    return SLOWEST


def _app_sections(res) -> list:
    try:
        from dissect.report.sections import sections
    except ImportError:
        return []
    return sections(res)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--frames", "frames", type=FrameSelection(), default=None,
              help="Frames to show, e.g. 1,5-9,20- (default: all).")
@click.option("--layer", type=click.IntRange(1, 7), default=None,
              help="Show only fields at this OSI layer (1 physical ... 7 application).")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@click.option("--color/--no-color", "color", default=None)
def show(file, frames, layer, fmt, color):
    """Every field of each packet, grouped by OSI layer, application at the top."""
    from dissect.engine import Engine
    from dissect.protocols.frame import dissect_frame
    from dissect.report import jsonl
    from dissect.report.terminal import render_packet
    from dissect.report.text import use_colour
    out = Out()
    colour = use_colour(force=color)

    def on_frame(fr, d, v):
        if frames is not None and not frames(fr.number):
            return
        layers = dissect_frame(fr)
        if fmt == "jsonl":
            if layer is not None:
                layers = [l for l in layers if int(l.osi) == layer]
            out.line(jsonl.dumps(jsonl.packet_record(fr, layers, v.flags, v.conn, v.values)))
        else:
            out.line(render_packet(fr, layers, v.flags, v.conn, layer, colour))
            out.line("")

    res = Engine(file, on_frame=on_frame).run()
    if fmt == "jsonl":
        out.line(jsonl.dumps(res.summary.to_record() | {"file": file,
                 "error": str(res.error) if res.error else None}))
    _finish(res, out)


def _mount_optional():
    """Commands that live in their own packages (flows, retries, lab, craft, ...)."""
    import importlib
    for mod, name in (("dissect.commands.flows", "flows"),
                      ("dissect.commands.retrychains", "retries"),
                      ("dissect.commands.retry_cmd", "retries"),
                      ("dissect.commands.timing", "timing"),
                      ("dissect.commands.conversations", "conversations"),
                      ("dissect.commands.conversations", "cleartext"),
                      ("dissect.commands.cascade_cmd", "cascades"),
                      ("dissect.commands.follow", "follow"), ("dissect.commands.expert", "expert"),
                      ("dissect.commands.htmlreport", "report"),
                      ("dissect.commands.report_cmd", "report"),
                      ("dissect.commands.grpc_cmd", "grpc"),
                      ("dissect.commands.expertfollow", "follow"),
                      ("dissect.commands.expertfollow", "expert"),
                      ("dissect.commands.views", "follow"), ("dissect.commands.views", "expert"),
                      ("dissect.lab.cli", "lab"), ("dissect.craft.cli", "craft"),
                      ("dissect.craft.cli", "capture")):
        try:
            cmd = getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
        cli.add_command(cmd, name)


_mount_optional()


def main(argv=None) -> None:
    global _EXIT_FAST
    _EXIT_FAST = argv is None
    try:
        cli.main(args=argv, prog_name="dissect", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("dissect: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(ExitCode.USAGE)
    except DissectError as e:
        click.echo(f"dissect: error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("dissect: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except SystemExit:
        raise
    except Exception as e:  # a bug: say so in one line, no traceback unless asked
        if os.environ.get("DISSECT_DEBUG"):
            raise
        click.echo(f"dissect: internal error: {type(e).__name__}: {e} "
                   f"(set DISSECT_DEBUG=1 for a traceback; please report it)", err=True)
        sys.exit(ExitCode.INTERNAL)
    sys.exit(0)


if __name__ == "__main__":
    main()
