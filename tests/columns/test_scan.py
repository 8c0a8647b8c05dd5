"""The split run's scanner gives the reader's frames and decode_frame's results, frame by
frame, compiled and as Python source, on real captures and on mutated ones."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import PCAPS, corpus_files  # noqa: E402

from dissect.columns import scan as scan_mod  # noqa: E402
from dissect.columns.decode import decode_frame  # noqa: E402
from dissect.errors import CaptureError  # noqa: E402
from dissect.io.capture import CaptureReader  # noqa: E402
from dissect.parallel import shard_of_transport  # noqa: E402

SOURCE = Path(scan_mod.__file__).resolve().parents[2] / "dissect" / "columns" / "scan.py"


def _python_source_module():
    """scan.py loaded from its source, whether or not the compiled build is active."""
    spec = importlib.util.spec_from_file_location("dissect_scan_source", SOURCE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


IMPLEMENTATIONS = {"active": scan_mod, "source": _python_source_module()}


def _reference(path):
    """(frames, warnings, damaged) from the reader and decode_frame."""
    r = CaptureReader(path)
    out = []
    damaged = False
    try:
        for fr in r:
            out.append((fr, decode_frame(fr)))
    except CaptureError:
        damaged = True
    finally:
        r.close()
    return out, list(r.warnings), damaged


def _scan(mod, path, shard=0, nshards=1, keep_data=True):
    r = CaptureReader(path)
    try:
        info = r.info
        src = r._win.src
        warnings: list = []
        state = [0, False]

        def other(number, d):
            t = d.transport
            return shard_of_transport(t, nshards) if t is not None else number % nshards
        pairs = list(mod.pcap_pairs(src.buf, src.size, info.byte_order == "<",
                                    info.resolution, info.snaplen,
                                    info.interfaces[0]["linktype"], 0, shard, nshards,
                                    other, warnings, 0, None, state, keep_data))
    finally:
        r.close()
    return pairs, [(f, n) for _i, f, n in warnings], state


def _plain_pcaps(paths):
    out = []
    for p in paths:
        try:
            r = CaptureReader(p)
        except CaptureError:
            continue
        try:
            if r.info.format == "pcap" and not r.info.compressed and r.info.interfaces:
                out.append(p)
        finally:
            r.close()
    return out


def _captures():
    return _plain_pcaps(sorted(PCAPS.glob("*.pcap")) + corpus_files())


@pytest.mark.parametrize("impl", sorted(IMPLEMENTATIONS))
def test_scan_equals_reader_and_decode_frame(impl):
    mod = IMPLEMENTATIONS[impl]
    caps = _captures()
    assert caps, "no uncompressed pcap to compare on"
    for path in caps:
        ref, ref_warn, damaged = _reference(path)
        got, warn, state = _scan(mod, path)
        assert state[0] == len(ref), path
        assert state[1] == damaged, path
        assert [f for f, _ in got] == [f for f, _ in ref], path
        assert [d for _, d in got] == [d for _, d in ref], path
        assert warn == ref_warn, path


@pytest.mark.parametrize("impl", sorted(IMPLEMENTATIONS))
def test_shards_partition_the_frames_by_connection(impl):
    mod = IMPLEMENTATIONS[impl]
    for path in _captures()[:40]:
        ref, _w, _d = _reference(path)
        for n in (2, 3):
            seen: dict = {}
            for shard in range(n):
                got, _warn, _state = _scan(mod, path, shard, n, keep_data=False)
                for fr, d in got:
                    assert fr.number not in seen, path
                    seen[fr.number] = (shard, d)
                    t = d.transport
                    if t is not None:
                        assert shard_of_transport(t, n) == shard, (path, fr.number)
            assert sorted(seen) == [fr.number for fr, _ in ref], path
            assert [seen[fr.number][1] for fr, _ in ref] == [d for _, d in ref], path


def test_compiled_and_source_agree_on_mutated_captures(tmp_path):
    """Random byte flips and cut lengths in the headers of a real capture: hostile
    lengths, broken TCP offsets, odd IP fields; both implementations give the reference."""
    base = PCAPS / "http-keepalive-loss.pcap"
    if not base.exists():
        pytest.skip("pcaps/http-keepalive-loss.pcap not committed")
    data = bytearray(base.read_bytes())
    rng = random.Random(7)
    for i in range(60):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 40)):
            # mostly inside the first headers of a frame, where the fast path reads
            pos = rng.randrange(24, min(len(buf), 24 + 4000))
            buf[pos] = rng.randrange(256)
        if i % 5 == 0:
            buf = buf[:rng.randrange(24, len(buf))]
        p = tmp_path / f"m{i}.pcap"
        p.write_bytes(bytes(buf))
        try:
            ref, ref_warn, damaged = _reference(p)
        except CaptureError:
            continue
        for mod in IMPLEMENTATIONS.values():
            got, warn, state = _scan(mod, p)
            assert [x for x in got] == ref, i
            assert state[1] == damaged, i
            assert warn == ref_warn, i
