"""Ground truth: what a lab client (or server) really did, from its own clock.

Times are wall-clock seconds since the epoch (comparable with capture timestamps, which
the kernel stamps from the same realtime clock) but derived from ``time.monotonic()``
against one wall-clock anchor taken at start, so intervals between records are exact
even if the wall clock is stepped during a run.

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


class Recorder:
    def __init__(self, role: str, scenario: str, seed: int | None = None):
        self.role = role
        self.scenario = scenario
        self.seed = seed
        self._wall0 = time.time()
        self._mono0 = time.monotonic()
        self.started = self._wall0
        self.policy: dict = {}
        self.info: dict = {}
        self.records: list[dict] = []
        self.transitions: list[dict] = []
        self.outcome: str | None = None

    def now(self) -> float:
        """Wall-clock time on a monotonic base (see module doc)."""
        return self._wall0 + (time.monotonic() - self._mono0)

    def rel(self, t: float) -> float:
        return round(t - self.started, 6)

    def record(self, kind: str, start: float, end: float | None = None, **fields) -> dict:
        entry = {"seq": len(self.records) + 1, "kind": kind, "start": round(start, 6),
                 "start_rel_s": self.rel(start)}
        if end is not None:
            entry["end"] = round(end, 6)
            entry["duration_s"] = round(end - start, 6)
        entry.update(fields)
        self.records.append(entry)
        return entry

    def transition(self, t: float, old: str, new: str, reason: str) -> None:
        self.transitions.append({"t": round(t, 6), "t_rel_s": self.rel(t), "from": old,
                                 "to": new, "reason": reason})

    def to_dict(self) -> dict:
        records = [dict(r) for r in self.records]
        last: dict = {}
        for r in records:
            if r["kind"] != "attempt":
                continue
            prev = last.get(r.get("chain"))
            if prev is not None:
                r["gap_s"] = round(r["start"] - prev["start"], 6)
                if "end" in prev:
                    r["wait_s"] = round(r["start"] - prev["end"], 6)
            last[r.get("chain")] = r
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
