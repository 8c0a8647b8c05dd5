#!/usr/bin/env python3
"""Long fuzz runs (the test suite runs a bounded version of the same targets).

    python3 scripts/fuzz.py [--inputs 100000] [--seed N] [--target frames|captures|app|all]

Mutates real frames and captures (pcaps/, and ../shared/corpus when present) and random
bytes, and checks the invariant of every target: dissect's own error or a result, never
another exception, never a hang (each input gets a time budget), and bounded memory.
Prints a summary and the first crashing inputs (saved under ./fuzz-crashes/).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dissect.errors import DissectError  # noqa: E402
from dissect.fuzz import LINKTYPES, capture_target, frame_target  # noqa: E402
from dissect.io.capture import read_frames  # noqa: E402

# one input taking longer than this is reported as a hang
PER_INPUT_BUDGET_S = 2.0


def seeds() -> tuple[list[tuple[int, bytes]], list[bytes]]:
    frames, files = [], []
    paths = sorted((REPO / "pcaps").glob("*.pcap"))
    corpus = Path(os.environ.get("DISSECT_CORPUS", REPO.parent / "shared" / "corpus"))
    if corpus.exists():
        paths += sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix in
                        (".pcap", ".pcapng", ".cap") and p.stat().st_size < 200_000)
    for p in paths:
        try:
            for fr in read_frames(str(p)):
                frames.append((fr.linktype, fr.data))
                if len(frames) > 20000:
                    break
        except DissectError:
            pass
        if p.stat().st_size < 60_000:
            files.append(p.read_bytes())
    return frames, files


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.random()
        if not b:
            b = bytearray(rng.randbytes(rng.randint(1, 64)))
        elif op < 0.4:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op < 0.6:
            i = rng.randrange(len(b))
            b[i] = rng.choice((0, 1, 0x7F, 0x80, 0xFF))
        elif op < 0.75:
            i = rng.randrange(len(b))
            del b[i:i + rng.randint(1, 16)]
        elif op < 0.9:
            i = rng.randrange(len(b) + 1)
            b[i:i] = rng.randbytes(rng.randint(1, 16))
        else:
            b = b[: rng.randrange(len(b) + 1)]
    return bytes(b)


def app_targets():
    """Stream/datagram parsers: feed mutated payloads, whole and split."""
    import importlib
    out = []
    for name in ("http", "websocket", "http2", "tls", "ftp", "smtp", "imap", "pop3", "dns",
                 "rtc", "quic"):
        try:
            mod = importlib.import_module(f"dissect.analysis.app.{name}")
        except ImportError:
            continue
        for cls in getattr(mod, "PARSERS", []):
            out.append(cls)
    return out


def app_run(cls, data: bytes, rng: random.Random) -> None:
    from dissect.analysis.app.base import DatagramParser
    if issubclass(cls, DatagramParser):
        p = cls()
        p.datagram(data, 1, 0.0, ("127.0.0.1", 1000), ("127.0.0.1", 53))
        p.close()
        return
    p = cls()
    cut = rng.randrange(len(data) + 1)
    p.feed(0, data[:cut], 1, 0.0)
    p.feed(1, data[cut:], 2, 0.1)
    p.close(0.2)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--target", choices=["frames", "captures", "app", "all"], default="all")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    frames, files = seeds()
    apps = app_targets() if args.target in ("app", "all") else []
    crashes, hangs, done = [], [], 0
    t0 = time.time()
    crash_dir = Path("fuzz-crashes")
    kinds = {"frames": ["frames"], "captures": ["captures"], "app": ["app"],
             "all": ["frames"] * 6 + ["captures"] + ["app"] * 3}[args.target]
    if not apps and "app" in kinds:
        kinds = [k for k in kinds if k != "app"] or ["frames"]
    for i in range(args.inputs):
        kind = rng.choice(kinds)
        t = time.perf_counter()
        try:
            if kind == "frames":
                lt, data = rng.choice(frames) if frames and rng.random() < 0.9 else \
                    (rng.choice(LINKTYPES), rng.randbytes(rng.randint(0, 200)))
                data = mutate(rng, data)
                frame_target(data, lt)
            elif kind == "captures":
                data = mutate(rng, rng.choice(files)) if files else rng.randbytes(200)
                capture_target(data)
            else:
                cls = rng.choice(apps)
                src = rng.choice(frames)[1] if frames else b""
                data = mutate(rng, src[rng.randrange(max(len(src) - 40, 1)):])
                app_run(cls, data, rng)
        except DissectError:
            pass
        except Exception:
            crashes.append((kind, data, traceback.format_exc()))
            crash_dir.mkdir(exist_ok=True)
            (crash_dir / f"{kind}-{i}.bin").write_bytes(data)
        dt = time.perf_counter() - t
        if dt > PER_INPUT_BUDGET_S:
            hangs.append((kind, dt))
        done += 1
        if done % 10000 == 0:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"{done} inputs, {len(crashes)} crashes, {len(hangs)} slow, "
                  f"peak RSS {rss:.0f} MB, {time.time() - t0:.0f} s", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"done: {done} inputs ({len(frames)} seed frames, {len(files)} seed files, "
          f"{len(apps)} app parsers), {len(crashes)} crashes, {len(hangs)} over "
          f"{PER_INPUT_BUDGET_S} s, peak RSS {rss:.0f} MB, {time.time() - t0:.0f} s")
    for kind, data, tb in crashes[:5]:
        print(f"--- {kind} crash ({len(data)} bytes)\n{tb}")
    return 1 if crashes or hangs else 0


if __name__ == "__main__":
    sys.exit(main())
