"""Bounded fuzzing of both decoding paths: arbitrary frames never raise, and hostile
structures (deep extension chains, nested tunnels) stay bounded."""

from __future__ import annotations

import struct
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissect.columns.decode import MAX_IPV6_EXT_HEADERS, decode_frame
from dissect.fuzz import LINKTYPES, frame_target
from dissect.io.capture import Frame
from dissect.protocols.frame import dissect_frame

SETTINGS = settings(max_examples=1500, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.binary(max_size=300), st.sampled_from(LINKTYPES))
def test_arbitrary_frames_never_raise(data, linktype):
    frame_target(data, linktype)


def _eth_ipv4(proto: int, payload: bytes) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return b"\x00" * 12 + b"\x08\x00" + ip + payload


@SETTINGS
@given(st.integers(0, 255), st.binary(min_size=0, max_size=80))
def test_structured_ipv4_payloads_never_raise(proto, payload):
    frame_target(_eth_ipv4(proto, payload), 1)


@SETTINGS
@given(st.binary(min_size=20, max_size=60), st.binary(max_size=40))
def test_tcp_headers_with_random_offsets_and_options(hdr, rest):
    frame_target(_eth_ipv4(6, hdr + rest), 1)


def test_deep_ipv6_extension_chain_is_cut_at_the_limit():
    n = 5000
    ext = b"".join(struct.pack("!BB6x", 60, 0) for _ in range(n))   # dest-opts -> dest-opts ...
    ip6 = struct.pack("!IHBB16s16s", 0x60000000, len(ext), 60, 64, b"\0" * 15 + b"\1",
                      b"\0" * 15 + b"\1")
    data = b"\x00" * 12 + b"\x86\xdd" + ip6 + ext
    fr = Frame(1, 0.0, len(data), len(data), 1, 0, data)
    t = time.perf_counter()
    d = decode_frame(fr)
    layers = dissect_frame(fr)
    assert time.perf_counter() - t < 1.0
    assert "ipv6-too-many-extension-headers" in d.anomalies
    assert sum(1 for l in layers if l.protocol == "ipv6.ext") <= MAX_IPV6_EXT_HEADERS
    assert any("ipv6-too-many-extension-headers" in l.anomalies for l in layers)


def test_nested_tunnels_are_cut_at_the_limit():
    inner = b""
    for _ in range(200):   # IP-in-IP 200 deep
        inner = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(inner) + 20, 1, 0, 64, 4, 0,
                            b"\1\1\1\1", b"\2\2\2\2") + inner
    data = b"\x00" * 12 + b"\x08\x00" + inner
    fr = Frame(1, 0.0, len(data), len(data), 1, 0, data)
    d = decode_frame(fr)
    layers = dissect_frame(fr)
    assert "encapsulation-too-deep" in d.anomalies
    assert any("encapsulation-too-deep" in l.anomalies for l in layers)
    assert layers[-1].protocol == "data"   # the rest is kept raw, not dropped
