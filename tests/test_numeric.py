"""dissect.numeric: the compiled snap_ns (C doubles, rint) equals the Python reference."""

from __future__ import annotations

import random

import pytest

from dissect import numeric, speedups
from dissect.analysis import tcp


def _values():
    rnd = random.Random(7)
    vals = [0.0, -0.0, 1e-9, 5e-10, 1.5e-9, 2.5e-9, -2.5e-9, 1.0005e-6, 1.0025e-6,
            0.0000012995, 0.0000013005, 3.0, 1e9, 1.8e9, -1.8e9, 9.2e9, 9.3e9, 1e12, -1e15]
    vals += [k / 2 * 1e-9 for k in range(-4000, 4000)]          # every half nanosecond
    vals += [(k * 1000 + d) * 1e-9 for k in range(0, 3000, 7)
             for d in (-301, -300, 299, 300, 301, 500)]
    vals += [rnd.uniform(-2, 2) for _ in range(20000)]
    vals += [rnd.uniform(1.6e9, 1.9e9) - rnd.uniform(1.6e9, 1.9e9) for _ in range(20000)]
    vals += [rnd.uniform(1.6e9, 1.9e9) for _ in range(5000)]     # a timestamp minus 0.0
    return vals


def test_tcp_ns_equals_the_python_reference():
    if "dissect.analysis.tcp" not in speedups.active():
        pytest.skip("dissect.analysis.tcp runs as Python here: nothing compiled to compare "
                    "(python3 scripts/build_speedups.py)")
    for v in _values():
        want = numeric.snap_ns(v, tcp._US_SNAP_NS)
        got = tcp._ns(v)
        assert got == want and type(got) is int, v
