"""Named limits: every one exists where the table says, can be overridden, and bites."""

from __future__ import annotations

import importlib
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import run_dissect  # noqa: E402

from dissect.errors import ExitCode  # noqa: E402
from dissect.limits import LIMITS, LimitError, current, set_limit  # noqa: E402


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_every_limit_exists_with_a_reason_comment(name):
    for mod, attr in LIMITS[name][1]:
        m = importlib.import_module(mod)
        assert isinstance(getattr(m, attr), (int, float))
        # the source, also when the module runs compiled (dissect.speedups)
        from dissect.speedups import source_path
        src = source_path(mod).read_text()
        # the constant is defined with a reason: a comment on its line or just above
        lines = src.splitlines()
        i = next(i for i, l in enumerate(lines) if l.startswith(f"{attr} ="))
        assert "#" in lines[i] or lines[i - 1].lstrip().startswith("#"), (mod, attr)


def test_override_and_restore():
    old = current()["max-caplen"]
    set_limit("max-caplen", "100")
    try:
        import dissect.io.capture as c
        assert c.MAX_CAPLEN == 100
    finally:
        set_limit("max-caplen", str(old))
    with pytest.raises(LimitError):
        set_limit("no-such-limit", "1")
    with pytest.raises(LimitError):
        set_limit("max-caplen", "lots")


def test_cli_limit_bites(tmp_path):
    p = tmp_path / "x.pcap"
    hdr = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    p.write_bytes(hdr + (struct.pack("<IIII", 1, 0, 200, 200) + bytes(200)) * 2)
    rc, _, err = run_dissect("analyze", p)
    assert rc == 0
    rc, _, err = run_dissect("--limit", "max-caplen=100", "analyze", p)
    assert rc == ExitCode.DAMAGED and "maximum of 100" in err
    rc, _, err = run_dissect("--limit", "bogus=1", "analyze", p)
    assert rc == ExitCode.USAGE and "unknown limit" in err
    rc, out, _ = run_dissect("limits")
    assert rc == 0 and "reassembly-ooo-bytes" in out
