"""Cascades: request trees across services, retry amplification, and where the time went.

A downstream request (B -> C) is linked to the upstream request (A -> B) that caused it when
B is the server of the upstream request and the client of the downstream one (same
address), and the downstream request starts after the upstream request reached B and ends
before B answered. When several upstream requests at B could have caused it, the link is
not guessed: the record says ``"ambiguous": true``.

A user request at the edge is a retry chain of the edge client (the same request repeated
after failures, :func:`dissect.analysis.backoff_chains.http_chains`) or a single request.

Record (JSON Lines)::

    {"type": "cascade", "root": {"client", "server", "method", "target", "frame", "ts",
                                 "status"},
     "tiers": [{"tier": 0, "server": "ip:port", "attempts": 3, "statuses": [502, 502, 200],
                "own_s": ..., "waiting_s": ...}, ...],
     "amplification": [1, 3, 7],      # the user's one request, then attempts per tier
     "delay_tier": 1,                 # the tier with the most time of its own
     "ambiguous": false, "tree": [{"server", "frame", "ts", "duration_s", "status",
                                   "children": [...]}, ...]}
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

# a downstream request may start/end this much outside its upstream one (clock of one
# capture point: only the capture's own timestamps matter)
SLACK_S = 0.0005


class _Tx:
    __slots__ = ("rec", "client", "server", "start", "end", "children", "parents")

    def __init__(self, rec, client, server):
        self.rec = rec
        self.client = client
        self.server = server
        self.start = rec.get("request_ts")
        self.end = rec.get("response_ts") or self.start
        self.children: list = []
        self.parents: list = []


def _transactions(res) -> list[_Tx]:
    cmap = {c["id"]: c for c in res.connections}
    out = []
    for r in res.records:
        if r.get("type") != "http" or r.get("request_ts") is None:
            continue
        c = cmap.get(r.get("conn"))
        if c is None:
            continue
        out.append(_Tx(r, c["client"]["ip"], f"{c['server']['ip']}:{c['server']['port']}"))
    return out


def link(txs: list[_Tx]) -> None:
    """Parents of every transaction: upstream requests served on the host that sent it,
    to another service than the one it calls, that enclose it in time. Downstream
    candidates are looked up by start time (sorted, bisected), so a busy host costs
    O(n log n + links), not every pair."""
    by_client: dict = {}
    for t in txs:
        by_client.setdefault(t.client, []).append(t)
    starts: dict = {}
    for host, lst in by_client.items():
        lst.sort(key=lambda x: x.start)
        starts[host] = [x.start for x in lst]
    for up in txs:
        host = up.server.rsplit(":", 1)[0]
        lst = by_client.get(host)
        if not lst:
            continue
        st = starts[host]
        i = bisect_left(st, up.start - SLACK_S)
        j = bisect_right(st, up.end + SLACK_S)
        for down in lst[i:j]:
            # a request to the same service is a peer of the upstream one (another
            # client's), not a call it made
            if down is up or down.server == up.server:
                continue
            if down.end <= up.end + SLACK_S:
                down.parents.append(up)
    for t in txs:
        if len(t.parents) == 1:
            t.parents[0].children.append(t)


def _node(t: _Tx) -> dict:
    return {"server": t.server, "method": t.rec.get("method"), "target": t.rec.get("target"),
            "frame": t.rec.get("request_frame"), "ts": t.start,
            "duration_s": round(t.end - t.start, 6), "status": t.rec.get("status"),
            "ambiguous": len(t.parents) > 1,
            "children": [_node(c) for c in sorted(t.children, key=lambda x: x.start)]}


def _union(intervals) -> float:
    tot, cur = 0.0, None
    for a, b in sorted(intervals):
        if cur is None or a > cur[1]:
            if cur:
                tot += cur[1] - cur[0]
            cur = [a, b]
        else:
            cur[1] = max(cur[1], b)
    if cur:
        tot += cur[1] - cur[0]
    return tot


def cascade_records(res) -> list[dict]:
    from dissect.analysis.backoff_chains import http_chains
    txs = _transactions(res)
    link(txs)
    by_frame = {t.rec.get("request_frame"): t for t in txs}
    roots = [t for t in txs if not t.parents]
    # group the edge's retries of one user request
    groups, used = [], set()
    for ch in http_chains(res.records, res.connections):
        members = [by_frame[a["frame"]] for a in ch["attempts"] if a["frame"] in by_frame]
        members = [m for m in members if m in roots]
        if len(members) >= 2:
            groups.append(members)
            used.update(id(m) for m in members)
    groups += [[t] for t in roots if id(t) not in used]
    out = []
    for g in sorted(groups, key=lambda g: g[0].start):
        if not any(t.children for t in g):
            continue     # nothing downstream: not a cascade
        tiers, level, ambiguous = [], g, False
        while level:
            own, waiting = 0.0, 0.0
            for t in level:
                w = _union([(c.start, c.end) for c in t.children])
                waiting += w
                own += max(0.0, (t.end - t.start) - w)
                ambiguous |= len(t.parents) > 1
            tiers.append({"tier": len(tiers), "server": level[0].server, "attempts": len(level),
                          "statuses": [t.rec.get("status") for t in level],
                          "own_s": round(own, 6), "waiting_s": round(waiting, 6)})
            level = [c for t in level for c in sorted(t.children, key=lambda x: x.start)]
        first = g[0]
        out.append({"type": "cascade",
                    "root": {"client": first.client, "server": first.server,
                             "method": first.rec.get("method"), "target": first.rec.get("target"),
                             "frame": first.rec.get("request_frame"), "ts": first.start,
                             "status": g[-1].rec.get("status")},
                    "tiers": tiers, "amplification": [1] + [t["attempts"] for t in tiers],
                    "delay_tier": max(tiers, key=lambda t: t["own_s"])["tier"],
                    "ambiguous": ambiguous, "tree": [_node(t) for t in g]})
    return out


def worst_amplification(records: list[dict]) -> dict | None:
    cs = [r for r in records if r.get("type") == "cascade"]
    return max(cs, key=lambda r: r["amplification"][-1], default=None)
