"""Ground-truth records: clock, gaps per retry chain, JSON round trip."""

from __future__ import annotations

import json
import time

from dissect.lab.truth import SCHEMA, Recorder, Stamp


def test_now_is_wall_clock_on_a_monotonic_base():
    rec = Recorder("client", "x")
    a = rec.now()
    time.sleep(0.01)
    b = rec.now()
    assert abs(a - time.time()) < 0.5
    assert 0.009 < b - a < 0.5
    assert 0.009 < b.mono - a.mono < 0.5


def test_stamps_stay_on_the_wall_clock_and_intervals_on_the_monotonic_one():
    """A slewed or stepped wall clock moves the stamps (as it moves packet stamps) but
    not the intervals a policy slept."""
    rec = Recorder("client", "x")
    # wall clock stepped back 0.25 s between the two attempts; 1.0 s really passed
    a = Stamp(1000.0, 50.0)
    a_end = Stamp(1000.5, 50.5)
    b = Stamp(1000.75, 51.0)
    rec.record("attempt", a, a_end)
    rec.record("attempt", b, Stamp(1001.0, 51.25))
    out = rec.to_dict()["records"]
    assert out[0]["start"] == 1000.0 and out[1]["start"] == 1000.75
    assert out[0]["duration_s"] == 0.5 and out[1]["duration_s"] == 0.25
    assert out[1]["gap_s"] == 1.0 and out[1]["wait_s"] == 0.5
    assert json.loads(json.dumps(out))[1]["start"] == 1000.75


def test_gaps_are_computed_within_each_chain_only():
    rec = Recorder("client", "dns")
    rec.record("attempt", 100.0, 100.5, chain="a")
    rec.record("attempt", 100.1, 100.2, chain="b")
    rec.record("attempt", 101.5, 101.6, chain="a")
    rec.record("request", 102.0, 102.1)
    out = rec.to_dict()["records"]
    assert "gap_s" not in out[0] and "gap_s" not in out[1]
    assert out[2]["gap_s"] == 1.5 and out[2]["wait_s"] == 1.0
    assert "gap_s" not in out[3]


def test_write_round_trips_with_schema_policy_and_transitions(tmp_path):
    rec = Recorder("client", "circuit-breaker", seed=3)
    rec.policy = {"failure_threshold": 3}
    t = rec.now()
    rec.transition(t, "closed", "open", "threshold-reached")
    rec.outcome = "completed"
    rec.write(tmp_path / "t.json")
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["schema"] == SCHEMA and data["seed"] == 3
    assert data["policy"] == {"failure_threshold": 3}
    assert data["transitions"][0]["to"] == "open"
    assert data["outcome"] == "completed"
    assert not (tmp_path / "t.json.tmp").exists()
