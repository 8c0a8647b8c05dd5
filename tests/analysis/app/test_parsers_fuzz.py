"""Bounded fuzzing of every registered application parser: arbitrary bytes, cut anywhere,
give records or our own error - never another exception (a longer run: scripts/fuzz.py)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissect.analysis.app.base import DatagramParser
from dissect.analysis.app.dispatch import registry
from dissect.errors import DissectError

STREAMS, GRAMS = registry()
PREFIXES = [b"", b"GET / HTTP/1.1\r\n", b"HTTP/1.1 200 OK\r\n", b"\x16\x03\x01", b"220 ",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"* OK ", b"+OK ", b"\x00\x1c"]


@pytest.mark.parametrize("cls", STREAMS, ids=lambda c: c.__name__)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PREFIXES), st.binary(max_size=400), st.binary(max_size=400),
       st.integers(0, 400))
def test_stream_parsers_never_raise_foreign_errors(cls, prefix, c, s, cut):
    p = cls(conn=0, meta={"client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80)})
    data = prefix + c
    try:
        p.feed(0, data[:cut], 1, 0.0)
        p.feed(1, s, 2, 0.1)
        p.feed(0, data[cut:], 3, 0.2)
        p.gap(1, 10, 4, 0.3)
        p.close(0.4)
    except DissectError:
        pass


@pytest.mark.parametrize("cls", GRAMS, ids=lambda c: c.__name__)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=4))
def test_datagram_parsers_never_raise_foreign_errors(cls, grams):
    assert issubclass(cls, DatagramParser)
    p = cls(conn="udp/0", meta={"client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 53)})
    try:
        for i, g in enumerate(grams):
            p.datagram(g, i + 1, float(i), ("127.0.0.1", 40000), ("127.0.0.1", 53))
        p.close()
    except DissectError:
        pass
