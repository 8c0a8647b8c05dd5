"""Bounded fuzzing of the capture readers: any bytes read as frames or raise our own error;
mutated real captures keep every frame before the damage."""

from __future__ import annotations

import random
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import PCAPS  # noqa: E402

from dissect.errors import DissectError  # noqa: E402
from dissect.fuzz import capture_target, pcap_header, pcap_record  # noqa: E402
from dissect.io.capture import read_frames  # noqa: E402

SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
MAGICS = [b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\x0a\x0d\x0d\x0a",
          b"\x1f\x8b"]


@SETTINGS
@given(st.sampled_from(MAGICS), st.binary(max_size=400))
def test_any_bytes_after_a_magic_number(magic, rest):
    capture_target(magic + rest)


@SETTINGS
@given(st.lists(st.binary(max_size=120), max_size=6), st.booleans(), st.booleans(),
       st.binary(max_size=20))
def test_valid_records_then_garbage(records, big, ns, tail):
    blob = pcap_header(1, big, ns) + b"".join(pcap_record(r, big) for r in records) + tail
    n = capture_target(blob)
    assert n >= len(records)


def test_bit_flips_in_a_real_capture_keep_earlier_frames(tmp_path):
    caps = sorted(PCAPS.glob("*.pcap"))
    if not caps:
        import pytest
        pytest.skip("no committed captures")
    src = caps[0].read_bytes()
    rng = random.Random(1234)
    good = list(read_frames(str(caps[0])))
    for i in range(150):
        data = bytearray(src)
        pos = rng.randrange(24, len(data))
        data[pos] ^= 1 << rng.randrange(8)
        p = tmp_path / f"flip{i}.pcap"
        p.write_bytes(bytes(data))
        frames = []
        try:
            for fr in read_frames(str(p)):
                frames.append(fr)
        except DissectError:
            pass
        # every record that ends before the flipped byte is read unchanged
        end = 24
        for g in good:
            end += 16 + g.caplen
            if end > pos:
                break
            assert frames and frames[g.number - 1].data == g.data


def test_gzip_bomb_is_refused_quickly(tmp_path):
    import gzip
    import time

    import dissect.io.capture as cap
    # a pcap header then a vast run of zeros: expands ~1000x
    raw = pcap_header() + pcap_record(b"\0" * 60)
    blob = gzip.compress(raw + b"\0" * (80 * 2**20), compresslevel=9)
    p = tmp_path / "bomb.pcap.gz"
    p.write_bytes(blob)
    old = cap.GZIP_RATIO_MIN_OUTPUT
    cap.GZIP_RATIO_MIN_OUTPUT = 8 * 2**20   # make the test fast; the rule is the same
    try:
        t = time.perf_counter()
        try:
            for _ in read_frames(str(p)):
                pass
            refused = False
        except DissectError as e:
            refused = "bomb" in str(e) or "corrupt" in str(e) or "damaged" in str(e)
        assert refused
        assert time.perf_counter() - t < 10
    finally:
        cap.GZIP_RATIO_MIN_OUTPUT = old
