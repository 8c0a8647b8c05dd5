"""``dissect retries`` rendering (dissect/commands/retrychains.py): the analyze report lists
the first chains after a count by kind and model; ``dissect retries`` lists them all."""

from __future__ import annotations

from pathlib import Path

from dissect.analysis.backoff_chains import detect
from dissect.commands.retrychains import render, summary_line
from dissect.engine import Engine
from dissect.report.sections import MAX_ROWS, sections

PCAPS = Path(__file__).resolve().parents[2] / "pcaps"


def _chain(i, kind, model):
    return {"type": "retry", "kind": kind, "client": f"10.0.0.{i}:1", "server": "s:80",
            "key": "k", "attempts": [{"frame": 1, "ts": 0.0, "outcome": "sent"},
                                     {"frame": 2, "ts": 1.0, "outcome": "sent"}],
            "intervals_s": [1.0], "backoff": {"model": model, "confidence": 0.2},
            "succeeded": True, "warnings": []}


def test_limit_keeps_the_first_chains_and_counts_all():
    recs = [_chain(i, "syn" if i % 3 else "http", "single") for i in range(40)]
    text = render(recs, limit=5)
    assert text.splitlines()[0] == "40 retry chain(s): 26 syn (single), 14 http (single)"
    assert text.count("\nchain ") == 5 and "chain 6:" not in text
    assert "... and 35 more chain(s) ('dissect retries' lists all)" in text
    full = render(recs)
    assert full.count("chain ") == 40 and "more chain" not in full
    # at or under the limit nothing is cut and no count line is added
    assert render(recs[:5], limit=5) == render(recs[:5])


def test_summary_line_orders_by_count_then_name():
    recs = [_chain(0, "rto", "exponential"), _chain(1, "http", "constant"),
            _chain(2, "rto", "exponential")]
    assert summary_line(recs) == ("3 retry chain(s): 2 rto (exponential), "
                                  "1 http (constant)")


def test_analyze_section_is_bounded_on_a_real_capture():
    res = Engine(str(PCAPS / "tcp-syn-backoff-linear.pcap")).run()
    chains = [c for c in detect(res) if c["type"] == "retry"]
    assert chains
    text = next(s for s in sections(res) if s.startswith("Retries and circuit breakers"))
    assert text.count("\nchain ") == min(len(chains), MAX_ROWS)
