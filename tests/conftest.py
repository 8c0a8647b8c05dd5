"""Shared fixtures: the developers' corpus, tshark, root, and loopback captures."""

from __future__ import annotations

import csv
import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PCAPS = REPO / "pcaps"
CORPUS = Path(os.environ.get("DISSECT_CORPUS", REPO.parent / "shared" / "corpus"))


def have_tshark() -> bool:
    return shutil.which("tshark") is not None


def is_root() -> bool:
    return os.geteuid() == 0


needs_tshark = pytest.mark.skipif(not have_tshark(), reason="tshark is not installed "
                                  "(apt-get install tshark; .ci/run installs it)")
needs_root = pytest.mark.skipif(not is_root() or shutil.which("ip") is None,
                                reason="needs root and iproute2 for network namespaces")
needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None,
                                   reason="tcpdump is not installed")


def corpus_manifest() -> list[dict]:
    m = CORPUS / "MANIFEST.tsv"
    if not m.exists():
        return []
    with open(m, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def corpus_files(*categories: str) -> list[Path]:
    rows = corpus_manifest()
    return [CORPUS / r["file"] for r in rows if not categories or r["category"] in categories]


def corpus_params(*categories: str):
    """pytest params over corpus files (a single skipped param when the corpus is absent)."""
    files = corpus_files(*categories)
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(
            reason=f"developers' corpus not found at {CORPUS}"))]
    return [pytest.param(p, id=p.name[:80]) for p in files]


@functools.lru_cache(maxsize=256)
def _tshark(path: str, args: tuple) -> tuple[int, str, str]:
    p = subprocess.run(["tshark", "-n", "-r", path, *args], capture_output=True, text=True,
                       timeout=300)
    return p.returncode, p.stdout, p.stderr


def tshark_fields(path, fields, *, extra=(), occurrence="a") -> list[list[str]]:
    """Rows of tshark -T fields output (frame per row, one column per field)."""
    args = tuple(extra) + ("-T", "fields", "-E", f"occurrence={occurrence}", "-E",
                           "separator=\t") + tuple(x for f in fields for x in ("-e", f))
    _rc, out, _err = _tshark(str(path), args)
    return [line.split("\t") for line in out.splitlines()]


def tshark_json(path, fields, *, extra=()) -> list[dict]:
    """tshark -T json restricted to fields: per frame, field -> list of strings."""
    args = tuple(extra) + ("-T", "json") + tuple(x for f in fields for x in ("-e", f))
    _rc, out, _err = _tshark(str(path), args)
    if not out.strip():
        return []
    return [pkt["_source"]["layers"] for pkt in json.loads(out)]


def tshark_rc(path, extra=()) -> tuple[int, str]:
    rc, _o, err = _tshark(str(path), tuple(extra) + ("-T", "fields", "-e", "frame.number"))
    return rc, err


@pytest.fixture
def cli():
    """Run the dissect CLI in-process; returns (exit_code, stdout, stderr)."""
    from click.testing import CliRunner

    from dissect import cli as climod

    def run(*args):
        runner = CliRunner()
        r = runner.invoke(climod.cli, [str(a) for a in args], catch_exceptions=False)
        return r.exit_code, r.stdout, r.stderr
    return run


def run_dissect(*args, input=None, timeout=300):
    """Run the installed entry point as a user would (exit codes through main())."""
    import sys
    p = subprocess.run([sys.executable, "-m", "dissect.cli", *map(str, args)],
                       capture_output=True, text=True, timeout=timeout, input=input)
    return p.returncode, p.stdout, p.stderr


class Collect:
    """An observer for dissect.engine.finish_stream that keeps what a pass shows (a test
    only: observers must not)."""

    def __init__(self):
        self.conns, self.records = [], []

    def start(self, res):
        pass

    def conn(self, c):
        self.conns.append(c)

    def record(self, r):
        self.records.append(r)

    def finish(self, res):
        return self
