"""``dissect capture``: live capture with a one-line, layer-annotated view per packet.

Frames come from :class:`dissect.craft.tap.Tap` (each loopback packet once, kernel
timestamps, BPF filter compiled by libpcap), go to the pcap writer unchanged and are
dissected for display only; nothing in them is executed or used as a path. Stops after
``count`` packets, after ``duration`` seconds, or on Ctrl-C/SIGTERM - each a normal end:
the file is closed and complete.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

from dissect.craft.safety import CAP_NET_RAW, require_caps
from dissect.errors import RefusedError
from dissect.io.capture import Frame
from dissect.io.writer import PcapWriter
from dissect.report.text import safe

# The progress line is redrawn at most this often (a busy link must not flood stderr).
PROGRESS_INTERVAL_S = 0.25
# One read waits at most this long, so --duration and Ctrl-C are noticed promptly.
READ_SLICE_S = 0.1


@dataclass
class CaptureStats:
    packets: int = 0
    bytes: int = 0
    seconds: float = 0.0
    stopped_by: str = ""
    linktype: int = 0


def capture(iface: str, *, bpf: str | None = None, count: int | None = None,
            duration: float | None = None, out: str | None = None, force: bool = False,
            on_frame=None, progress=None) -> CaptureStats:
    """Capture on ``iface``; ``on_frame(frame)`` per packet, ``progress(stats)`` now and then."""
    require_caps((CAP_NET_RAW,), f"capture -i {safe(iface)}")
    if out is not None and os.path.exists(out) and not force:
        raise RefusedError(f"{out} exists; use --force to overwrite it", protocol="capture")
    from dissect.craft.tap import Tap
    tap = Tap(iface, bpf)
    stats = CaptureStats(linktype=tap.linktype)
    writer = None
    stop = threading.Event()
    old = {}
    if threading.current_thread() is threading.main_thread():
        def handler(signum, _f):
            stats.stopped_by = signal.Signals(signum).name
            stop.set()
        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if out is not None:
            writer = PcapWriter(out, tap.linktype, force=force)
        start = time.monotonic()
        shown = 0.0
        while not stop.is_set():
            now = time.monotonic()
            stats.seconds = now - start
            if duration is not None and stats.seconds >= duration:
                stats.stopped_by = f"{duration:g} s elapsed"
                break
            if progress is not None and now - shown >= PROGRESS_INTERVAL_S:
                progress(stats)
                shown = now
            wait = READ_SLICE_S if duration is None else min(READ_SLICE_S, duration - stats.seconds)
            item = tap.read(max(wait, 0.0))
            if item is None:
                continue
            ts, data = item
            stats.packets += 1
            stats.bytes += len(data)
            if writer is not None:
                writer.write(ts, data)
            if on_frame is not None:
                on_frame(Frame(stats.packets, ts, len(data), len(data), tap.linktype, 0, data))
            if count is not None and stats.packets >= count:
                stats.stopped_by = f"{count} packets"
                break
        stats.seconds = time.monotonic() - start
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        tap.close()
        if writer is not None:
            writer.close()
    return stats


def progress_line(stats: CaptureStats) -> None:
    sys.stderr.write(f"\r\x1b[K  capturing: {stats.packets} packets, {stats.bytes} bytes, "
                     f"{stats.seconds:.1f} s")
    sys.stderr.flush()
