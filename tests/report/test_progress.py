"""The progress bar: drawn only on a terminal, never with --quiet."""

from __future__ import annotations

import io

from dissect.report import progress as P


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_render_rate_and_time_left():
    line = P.render(0.25, 50_000, 2.0)
    assert "25.0%" in line and "25,000 pkt/s" in line and "0:06 left" in line
    assert line.count("#") == int(0.25 * P.BAR_WIDTH)


def test_silent_when_piped_or_quiet(monkeypatch):
    monkeypatch.setattr(P, "SHOW_AFTER_S", 0.0)
    monkeypatch.setattr(P, "MAX_REDRAWS_PER_S", 1e9)
    piped = io.StringIO()
    b = P.Progress(stream=piped)
    b.update(0.5, 10)
    b.close()
    assert piped.getvalue() == ""
    tty = _Tty()
    q = P.Progress(stream=tty, quiet=True)
    q.update(0.5, 10)
    assert tty.getvalue() == ""
    tty2 = _Tty()
    b = P.Progress(stream=tty2)
    b.update(0.5, 10)
    assert "50.0%" in tty2.getvalue()
    b.close()
    assert tty2.getvalue().endswith("\r\x1b[K")
