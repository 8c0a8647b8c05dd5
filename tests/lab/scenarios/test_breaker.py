"""The circuit breaker's transition table and its counting, without any network."""

from __future__ import annotations

import pytest

from dissect.lab.scenarios.breaker import CLOSED, HALF_OPEN, OPEN, TRANSITIONS, Breaker
from dissect.lab.truth import Recorder

EVENTS = ("success", "failure", "threshold-reached", "open-timer-expired")


@pytest.mark.parametrize("state", [CLOSED, OPEN, HALF_OPEN])
@pytest.mark.parametrize("event", EVENTS)
def test_every_state_event_pair_is_either_in_the_table_or_refused(state, event):
    b = Breaker(Recorder("client", "t"), threshold=3, open_s=1.0)
    b.state, b.opened_at = state, 0.0
    if (state, event) in TRANSITIONS:
        b.fire(event, 1.0)
        assert b.state == TRANSITIONS[(state, event)]
    else:
        with pytest.raises(KeyError):
            b.fire(event, 1.0)


def test_opens_after_threshold_consecutive_failures_and_short_circuits_while_open():
    rec = Recorder("client", "t")
    b = Breaker(rec, threshold=3, open_s=1.0)
    for t in (0.0, 0.2):
        assert b.admit(t) == "call"
        b.result(False, t)
        assert b.state == CLOSED
    b.admit(0.4)
    b.result(False, 0.4)
    assert b.state == OPEN
    assert b.admit(0.6) == "short-circuit"
    assert b.admit(1.35) == "short-circuit"
    assert b.admit(1.45) == "probe" and b.state == HALF_OPEN
    b.result(False, 1.5)
    assert b.state == OPEN and b.opened_at == 1.5
    assert b.admit(2.45) == "short-circuit"
    assert b.admit(2.55) == "probe"
    b.result(True, 2.6)
    assert b.state == CLOSED
    assert [(x["from"], x["to"]) for x in rec.transitions] == [
        (CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED)]


def test_a_success_resets_the_failure_count():
    b = Breaker(Recorder("client", "t"), threshold=3, open_s=1.0)
    for ok in (False, False, True, False, False):
        b.admit(0)
        b.result(ok, 0)
    assert b.state == CLOSED and b.failures == 2
