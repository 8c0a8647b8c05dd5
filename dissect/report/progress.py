"""A progress bar on stderr for long runs: fraction done, packets per second, time left.

Drawn only on a terminal (stderr a TTY) and never with ``--quiet``; redrawn at most a few
times a second, erased when the run ends, so piped output and logs stay clean."""

from __future__ import annotations

import sys
import time

# Redraws per second at most (each redraw is one short write).
MAX_REDRAWS_PER_S = 5
# Runs shorter than this never show a bar (no flicker for small files).
SHOW_AFTER_S = 1.0
BAR_WIDTH = 30


def _clock(seconds: float) -> str:
    s = int(max(0, seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def render(fraction: float, packets: int, elapsed: float, width: int = BAR_WIDTH) -> str:
    """One line of the bar (no control characters): the testable part."""
    f = min(1.0, max(0.0, fraction))
    done = int(f * width)
    rate = packets / elapsed if elapsed > 0 else 0.0
    left = elapsed * (1 - f) / f if f > 0 else None
    eta = _clock(left) if left is not None else "?"
    return (f"[{'#' * done}{'.' * (width - done)}] {f * 100:5.1f}%  "
            f"{rate:,.0f} pkt/s  {eta} left")


class Progress:
    def __init__(self, stream=None, enabled: bool | None = None, quiet: bool = False):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled and not quiet
        self.start = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def update(self, fraction: float, packets: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.start < SHOW_AFTER_S or now - self._last < 1 / MAX_REDRAWS_PER_S:
            return
        self._last = now
        self.stream.write("\r" + render(fraction, packets, now - self.start) + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False
