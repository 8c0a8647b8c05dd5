"""End-of-run analyses as observers of one streaming pass over a run's records.

An analysis that needs every connection and application record of a capture (retry
chains, breakers, cascades, timing, conversations, clear-text findings, the report's
sections) is written as an :class:`Observer`: it is shown each connection record once,
then each application record once, and keeps only what it needs of them (small tuples of
numbers and strings, counters, the first few rows it shows), never the records
themselves. So a run does not have to hold every record at once: they can come from
disk (:mod:`dissect.store`) one batch at a time, and all observers share one pass.

Calls, in this order: ``start(res)`` once; ``conn(c)`` for every connection record as a
:class:`~dissect.engine.Result` lists them (TCP connections by id, then UDP flows);
``record(r)`` for every application record in the order the run emitted them;
``finish(res)`` once. ``res`` has the run's small lists (``syns``, ``retrans``), its
``summary``, ``info`` and ``path`` from the start, so an observer can decide in ``start``
what it will need to keep; its ``connections`` and ``records`` may be streams that only
the pass reads, so observers never read them themselves.
"""

from __future__ import annotations


class Observer:
    """Base of end-of-run analyses; the four methods are the whole interface."""

    def start(self, res) -> None:
        """Before the pass (``res.syns``, ``res.retrans``, ``res.summary`` are there)."""

    def conn(self, c: dict) -> None:
        """One connection record (``type`` ``connection``: TCP or UDP)."""

    def record(self, r: dict) -> None:
        """One application record (any ``type``), after every connection record."""

    def finish(self, res):
        """The analysis' result, once every record was shown."""
        return None


def observe(res, observers: list) -> list:
    """Show ``res``'s connection records, then its application records, to every observer
    (one pass), and return each observer's ``finish(res)``."""
    for o in observers:
        o.start(res)
    conns = [o.conn for o in observers]
    recs = [o.record for o in observers]
    for c in res.connections:
        for f in conns:
            f(c)
    for r in res.records:
        for f in recs:
            f(r)
    return [o.finish(res) for o in observers]


def run(res, observer):
    """One observer over ``res``: its ``finish(res)``."""
    return observe(res, [observer])[0]
