"""scripts/bench.py, bounded: the benchmark runs end to end on a small committed capture
and reports every command (the full run, 1,000,000 packets, is the README's command)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_bench_runs_on_a_small_capture():
    cap = REPO / "pcaps" / "http-keepalive-loss.pcap"
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), str(cap)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [ln for ln in out.stdout.splitlines() if re.search(r"\d+ MB +\d+ MB +\d+ MB +\d+$", ln)]
    names = [r.split("  ")[0] for r in rows]
    assert sum(n.startswith("dissect analyze") for n in names) == 4
    for r in rows:
        assert r.split()[-1] == "0", r            # every command exited 0
        pps = float(re.search(r"\s([\d,]+)\s+(?:[\d.]+x|-)\s", r).group(1).replace(",", ""))
        assert pps > 0
    # the half-length run's line says whether memory grows with the capture's length
    assert re.search(r"memory growth: [\d.]+ MB on the first half, [\d.]+ MB on the whole .* - "
                     r"(not growing \(within [\d.]+ MB|GROWING)", out.stdout), out.stdout
    if shutil.which("tshark"):
        assert any(n.startswith("tshark TCP analysis") for n in names)
        # the ratio column is filled against tshark's TCP analysis, which is 1.00x itself
        assert re.search(r"tshark TCP analysis.*\s1\.00x\s", out.stdout)
    else:
        pytest.skip("tshark not installed: only dissect's rows were checked")


def test_bench_repeat_shows_every_run_and_the_fastest():
    cap = REPO / "pcaps" / "http-keepalive-loss.pcap"
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), str(cap),
                          "--repeat", "2"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    table = {r[:48].strip(): float(r[48:57]) for r in out.stdout.splitlines()
             if re.search(r"\d+ MB +\d+ MB +\d+ MB +\d+$", r)}
    runs = out.stdout.split("seconds of each of the 2 timed runs", 1)[1].splitlines()[1:]
    runs = {ln[:48].strip(): [float(x) for x in ln[48:].split()] for ln in runs
            if ln.startswith("  ") and ln.strip()}
    assert set(runs) == set(table)
    for name, secs in runs.items():
        assert len(secs) == 2 and table[name] == round(min(secs), 2), name
    bad = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), str(cap),
                          "--repeat", "2", "--once"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "--repeat" in bad.stderr
