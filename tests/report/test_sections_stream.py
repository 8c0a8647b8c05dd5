"""The analyze report from a streamed run (records on disk, one pass of observers) is the
report of an in-memory run, and one analysis failing in the pass takes only its section."""

import glob
from pathlib import Path

import pytest

import dissect.store as store_mod
from dissect import parallel as par
from dissect.report.sections import sections
from dissect.report.terminal import render_analyze

PCAPS = sorted(glob.glob(str(Path(__file__).resolve().parents[2] / "pcaps" / "*.pcap*")))


def _report(res) -> str:
    return render_analyze(res, colour=False, sections=sections(res))


@pytest.fixture
def tiny_batches(monkeypatch):
    import dissect.analysis.tcp as tcp
    monkeypatch.setattr(store_mod, "BATCH", 3)
    monkeypatch.setattr(tcp, "DORMANT_AFTER_S", 0.0)
    monkeypatch.setattr(tcp, "DORMANT_SWEEP_EVERY", 4)


@pytest.mark.parametrize("jobs", [1, 2])
def test_streamed_report_equals_in_memory_report(tiny_batches, jobs):
    assert PCAPS
    for p in PCAPS:
        a = par.run([p], jobs=jobs, slowest=5)
        b = par.run([p], jobs=jobs, slowest=5, stream=True)
        assert _report(b) == _report(a), p


def test_a_failing_analysis_takes_only_its_section(monkeypatch):
    from dissect.analysis import backoff_chains

    def boom(self, r):
        raise ValueError("broken on purpose")
    p = next(p for p in PCAPS if "retry-exponential" in p)
    good = _report(par.run([p], jobs=1, stream=True))
    assert "Retries and circuit breakers" in good
    monkeypatch.setattr(backoff_chains.RetryObserver, "record", boom)
    bad = _report(par.run([p], jobs=1, stream=True))
    assert "(retry analysis unavailable: ValueError: broken on purpose)" in bad
    assert "Retries and circuit breakers" not in bad
    # the other sections are there, as they were
    for title in ("HTTP transactions (L7)", "Slowest transactions", "What each conversation is"):
        assert (title in good) and (title in bad)
