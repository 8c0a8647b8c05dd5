"""Ground truth: what a lab client (or server) really did, from its own clock.

Times are wall-clock seconds since the epoch read at the moment of observation
(``time.time()``: the realtime clock the kernel stamps captured packets with, so a record
and its packet stay comparable even while a time daemon slews or steps that clock, as on
a freshly booted machine). Each stamp from :meth:`Recorder.now` also carries
``time.monotonic()``, and the intervals derived here (``duration_s``, ``gap_s``,
``wait_s``) come from that, so they equal the sleeps a policy made whatever the wall
clock does. Plain floats passed in are used for both.

A record is a dict; the ones with ``kind == "attempt"`` form retry chains (grouped by
their ``chain`` field, one chain when absent), and for those :meth:`Recorder.to_dict`
adds ``gap_s`` (start to start) and ``wait_s`` (previous end to this start) within the
chain, so the intervals a policy produced can be read off directly.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

SCHEMA = "dissect.lab.truth/1"


class Stamp(float):
    """A realtime stamp (the float value) that also remembers the monotonic clock."""

    __slots__ = ("mono",)

    def __new__(cls, wall: float, mono: float) -> "Stamp":
        obj = super().__new__(cls, wall)
        obj.mono = mono
        return obj


def _interval(a: float, b: float) -> float:
    """b - a, on the monotonic clock when both stamps carry it."""
    if isinstance(a, Stamp) and isinstance(b, Stamp):
        return b.mono - a.mono
    return float(b) - float(a)


class Recorder:
    def __init__(self, role: str, scenario: str, seed: int | None = None):
        self.role = role
        self.scenario = scenario
        self.seed = seed
        self.started = time.time()
        self.policy: dict = {}
        self.info: dict = {}
        self.records: list[dict] = []
        self._stamps: list[tuple[float, float | None]] = []  # (start, end) as passed in
        self.transitions: list[dict] = []
        self.outcome: str | None = None

    def now(self) -> Stamp:
        """Wall-clock time now, carrying the monotonic clock too (see module doc)."""
        return Stamp(time.time(), time.monotonic())

    def rel(self, t: float) -> float:
        return round(t - self.started, 6)

    def record(self, kind: str, start: float, end: float | None = None, **fields) -> dict:
        entry = {"seq": len(self.records) + 1, "kind": kind, "start": round(start, 6),
                 "start_rel_s": self.rel(start)}
        if end is not None:
            entry["end"] = round(end, 6)
            entry["duration_s"] = round(_interval(start, end), 6)
        entry.update(fields)
        self.records.append(entry)
        self._stamps.append((start, end))
        return entry

    def transition(self, t: float, old: str, new: str, reason: str) -> None:
        self.transitions.append({"t": round(t, 6), "t_rel_s": self.rel(t), "from": old,
                                 "to": new, "reason": reason})

    def to_dict(self) -> dict:
        records = [dict(r) for r in self.records]
        last: dict = {}
        for r, (start, end) in zip(records, self._stamps):
            if r["kind"] != "attempt":
                continue
            prev = last.get(r.get("chain"))
            if prev is not None:
                p_start, p_end = prev
                r["gap_s"] = round(_interval(p_start, start), 6)
                if p_end is not None:
                    r["wait_s"] = round(_interval(p_end, start), 6)
            last[r.get("chain")] = (start, end)
        out = {"schema": SCHEMA, "role": self.role, "scenario": self.scenario, "seed": self.seed,
               "pid": os.getpid(), "started": round(self.started, 6),
               "ended": round(self.now(), 6), "policy": self.policy, "info": self.info,
               "records": records}
        if self.transitions:
            out["transitions"] = self.transitions
        if self.outcome is not None:
            out["outcome"] = self.outcome
        return out

    def write(self, path: str | os.PathLike) -> None:
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n")
        os.replace(tmp, path)
