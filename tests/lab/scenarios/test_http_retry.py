"""The retry policy is fixed by the seed and stays within its declared bounds."""

from __future__ import annotations

from dissect.lab.scenarios.http_retry import BACKOFF_CAP_S, RETRYABLE, policy_from_seed


def test_policy_is_a_function_of_the_seed():
    assert policy_from_seed(5) == policy_from_seed(5)
    assert len({(p["base_s"], p["factor"]) for p in map(policy_from_seed, range(20))}) > 5


def test_policy_parameters_are_within_their_ranges():
    for seed in range(50):
        p = policy_from_seed(seed)
        assert 0.05 <= p["base_s"] <= 0.2
        assert p["factor"] in (1.5, 2.0, 2.5, 3.0)
        assert p["cap_s"] == BACKOFF_CAP_S
        assert set(p["retryable"]) == RETRYABLE
