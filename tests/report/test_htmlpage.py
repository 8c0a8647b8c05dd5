"""dissect report: one self-contained HTML file, rendered by headless Chromium with its
scripts running and the retry plot drawn; capture strings escaped; no silent overwrite."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import PCAPS, run_dissect  # noqa: E402

from dissect.errors import ExitCode  # noqa: E402

CAP = PCAPS / "http-retry-backoff.pcap"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def report(tmp_path):
    if not CAP.exists():
        pytest.skip("capture not committed")
    out = tmp_path / "report.html"
    rc, _, err = run_dissect("report", CAP, "-o", out)
    assert rc == 0, err
    return out


def test_self_contained_and_complete(report):
    html = report.read_text()
    # nothing to fetch: no external scripts, styles, images or links
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', html)
    for section in ("Traffic by OSI layer", "Protocol hierarchy", "Retry chains (1)",
                    "Circuit breakers", "Retransmission timeline", "Connections", "Packets"):
        assert section in html
    assert html.count('class="attempt"') == 4      # the client's four attempts
    assert "Retry-After" in html and "honoured" in html


def test_no_silent_overwrite(report):
    rc, _, err = run_dissect("report", CAP, "-o", report)
    assert rc == ExitCode.REFUSED and "--force" in err


def test_capture_strings_are_escaped():
    from dissect.report.htmlpage import caption, retry_svg
    chain = {"attempts": [{"frame": 1, "ts": 0.0, "outcome": "<script>x</script>"},
                          {"frame": 2, "ts": 1.0, "outcome": 200}],
             "intervals_s": [1.0], "backoff": {"model": "single", "base_s": 1.0,
                                               "confidence": 0.2},
             "succeeded": True, "warnings": [], "retry_after_s": None}
    svg = retry_svg(chain)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "retried 1 time" in caption(chain)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium;"
                    " scripts/install.sh --test installs it)")
def test_renders_in_headless_chromium(report, tmp_path):
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(args + ["--dump-dom", report.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    m = re.search(r'data-rendered="(\d+)"', dom)
    assert m and int(m.group(1)) >= 1          # the page's script ran: SVGs are in the DOM
    shot = tmp_path / "report.png"
    subprocess.run(args + [f"--screenshot={shot}", "--window-size=1280,1600", report.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000
