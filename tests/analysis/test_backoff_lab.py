"""Randomised real runs: the lab's HTTP client retries with exponential backoff and full
jitter (random delays from each seed) against a server failing the first attempts; every
chain and interval dissect reports must match what the client recorded doing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import needs_root, needs_tcpdump  # noqa: E402

from dissect.analysis.backoff_chains import detect_path  # noqa: E402

SEEDS = [3, 17, 29, 41, 58]


@needs_root
@needs_tcpdump
@pytest.mark.parametrize("scenario", ["http-retry", "http-retry-post"])
def test_detected_chains_equal_the_clients_own_record(tmp_path, scenario):
    found = expected = matched = 0
    for seed in SEEDS:
        cap = tmp_path / f"{scenario}-{seed}.pcap"
        p = subprocess.run([sys.executable, "-m", "dissect", "lab", scenario, "-w", str(cap),
                            "--seed", str(seed)], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        truth = json.loads(cap.with_suffix(".json").read_text())["client"]["records"]
        att = [r for r in truth if r["kind"] == "attempt"]
        chains = [r for r in detect_path(str(cap))[0] if r["type"] == "retry"]
        expected += 1 if len(att) >= 2 else 0
        found += len(chains)
        if len(chains) == 1 and len(chains[0]["attempts"]) == len(att):
            iv = [b["start"] - a["start"] for a, b in zip(att, att[1:])]
            ok = all(abs(x - t) <= max(0.010, 0.05 * t)
                     for x, t in zip(chains[0]["intervals_s"], iv))
            ok &= [a["outcome"] for a in chains[0]["attempts"]] == [a["status"] for a in att]
            matched += ok
    precision = matched / found if found else 1.0
    recall = matched / expected if expected else 1.0
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
