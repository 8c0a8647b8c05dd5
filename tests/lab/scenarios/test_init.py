"""The scenario table is consistent: modules, functions, capture names, make_pcaps."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

from dissect.errors import DissectError
from dissect.lab.scenarios import SCENARIOS, get

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_scenario_names_real_functions_and_a_style_capture_name(name):
    spec = SCENARIOS[name]
    missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{name} needs {missing}")
    mod = importlib.import_module(spec.module)
    assert callable(getattr(mod, spec.client_func))
    if spec.server:
        assert callable(getattr(mod, spec.server_func))
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", spec.pcap)
    assert spec.pcap.startswith(spec.protocol + "-")


def test_capture_names_are_unique():
    names = [s.pcap for s in SCENARIOS.values()]
    assert len(names) == len(set(names))


def test_make_pcaps_covers_every_scenario():
    spec = importlib.util.spec_from_file_location("make_pcaps", REPO / "scripts" / "make_pcaps.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert {c[1] for c in mod.CAPTURES} == set(SCENARIOS)
    for name, scenario, *_ in mod.CAPTURES:
        assert name.startswith(SCENARIOS[scenario].protocol + "-")


def test_unknown_scenario_is_our_error():
    with pytest.raises(DissectError, match="no lab scenario named 'nope'"):
        get("nope")
