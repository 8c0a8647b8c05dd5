"""Golden outputs of the terminal views on small committed captures.

Regenerate after an intended change with:  DISSECT_UPDATE_GOLDEN=1 python3 -m pytest tests/report
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import PCAPS, run_dissect  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = [
    ("expert-http-keepalive-loss.txt", ["expert", "http-keepalive-loss.pcap"]),
    ("follow-http-keepalive-loss.txt", ["follow", "http-keepalive-loss.pcap", "0"]),
    ("follow-hex-smtp.txt", ["follow", "smtp-two-recipients.pcap", "0", "--hex"]),
    ("ladder-ftp-passive.txt", ["flows", "ftp-passive.pcap", "--ladder", "0", "--ascii"]),
    ("retries-syn-classic.txt", ["retries", "tcp-syn-backoff-classic.pcap"]),
]


@pytest.mark.parametrize("golden,args", CASES, ids=[c[0] for c in CASES])
def test_terminal_view_matches_golden(golden, args, monkeypatch):
    cap = PCAPS / args[1]
    if not cap.exists():
        pytest.skip(f"{args[1]} not committed")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "100")
    rc, out, err = run_dissect(args[0], cap, *args[2:])
    assert rc == 0, err
    path = GOLDEN / golden
    if os.environ.get("DISSECT_UPDATE_GOLDEN"):
        path.write_text(out)
    assert out == path.read_text()


def test_follow_gives_each_byte_once_and_escapes_control_characters():
    from dissect.report.expertinfo import follow
    text = follow([(0, "data", b"GET /\x1b[31m\r\n"), (1, "gap", 10), (1, "data", b"OK\r\n")])
    assert "\x1b" not in text and "\\x1b[31m" in text
    assert "[10 bytes not captured]" in text
