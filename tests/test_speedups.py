"""Compiled modules: the same results as the Python source, and never a stale build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import PCAPS, corpus_params  # noqa: E402,F401

from dissect import speedups  # noqa: E402

BUILT = any(s == "compiled" for s in speedups.status().values()) or (
    os.environ.get(speedups.ENV_PURE) and speedups.MANIFEST.exists())
needs_build = pytest.mark.skipif(not BUILT, reason="speedups not built "
                                 "(python3 scripts/build_speedups.py)")


def _run(args, pure: bool):
    env = dict(os.environ)
    env.pop(speedups.ENV_PURE, None)
    if pure:
        env[speedups.ENV_PURE] = "1"
    p = subprocess.run([sys.executable, "-m", "dissect", *map(str, args)], env=env,
                       capture_output=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


@needs_build
@pytest.mark.parametrize("name", ["http-keepalive-loss.pcap", "http-tiers-breaker.pcap",
                                  "grpc-tiers.pcap", "http-circuit-breaker.pcap",
                                  "ftp-passive.pcap"])
def test_compiled_and_pure_python_give_the_same_bytes(name):
    cap = PCAPS / name
    if not cap.exists():
        pytest.skip(f"{name} not committed")
    for args in (["analyze", cap, "--format", "jsonl", "-j", "1"],
                 ["analyze", cap, "--no-color", "-j", "2"]):
        fast = _run(args, pure=False)
        slow = _run(args, pure=True)
        assert fast == slow, args


@needs_build
def test_compiled_modules_are_loaded_and_can_be_turned_off():
    code = ("import dissect.engine, dissect.analysis.tcp as t, dissect.speedups as s; "
            "print(t.__file__); print(s.active())")
    env = dict(os.environ)
    env.pop(speedups.ENV_PURE, None)
    on = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                        text=True, check=True).stdout.splitlines()
    assert on[0].endswith(".so") and "dissect.analysis.tcp" in on[1]
    env[speedups.ENV_PURE] = "1"
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert off[0].endswith("tcp.py") and off[1] == "[]"


def test_a_changed_source_is_never_shadowed(tmp_path, monkeypatch):
    """A build whose recorded source hash differs from the source now is 'stale' and not
    loaded; a matching one is; a build for another Python is 'not built'."""
    monkeypatch.setattr(speedups, "COMPILED_DIR", tmp_path)
    monkeypatch.setattr(speedups, "MANIFEST", tmp_path / "manifest.json")
    monkeypatch.delenv(speedups.ENV_PURE, raising=False)
    tag = sys.implementation.cache_tag
    m_ok, m_stale, m_other = speedups.MODULES[:3]
    for m in (m_ok, m_stale, m_other):
        speedups.compiled_path(m).write_bytes(b"not loaded by this test")
    manifest = {m_ok: {"sha256": speedups.module_hash(m_ok), "python": tag},
                m_stale: {"sha256": "0" * 64, "python": tag},
                m_other: {"sha256": speedups.module_hash(m_other),
                          "python": "cpython-20"}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    st = speedups.status()
    assert st[m_ok] == "compiled" and st[m_stale] == "stale" and st[m_other] == "not built"
    assert all(st[m] == "not built" for m in speedups.MODULES[3:])
    monkeypatch.setenv(speedups.ENV_PURE, "1")
    assert speedups.status()[m_ok] == "off"


def test_a_change_to_a_cimported_pxd_makes_its_users_stale(tmp_path, monkeypatch):
    """dissect/tuples.pxd's inline make() is compiled into the modules that cimport it: an
    edit to it must change their hash (so their old builds are not loaded)."""
    users = [m for m in speedups.MODULES
             if speedups.PACKAGE_DIR / "tuples.pxd" in speedups.cimported(m)]
    assert "dissect.analysis.tcp" in users and "dissect.columns.scan" in users
    before = {m: speedups.module_hash(m) for m in speedups.MODULES}
    pkg = tmp_path / "dissect"
    import shutil
    shutil.copytree(speedups.PACKAGE_DIR, pkg, ignore=shutil.ignore_patterns("_compiled"))
    (pkg / "tuples.pxd").write_text((pkg / "tuples.pxd").read_text() + "\n# edited\n")
    monkeypatch.setattr(speedups, "PACKAGE_DIR", pkg)
    after = {m: speedups.module_hash(m) for m in speedups.MODULES}
    changed = sorted(m for m in speedups.MODULES if before[m] != after[m])
    assert changed == sorted(users)


def test_tuples_make_builds_the_named_tuple():
    from dissect import tuples
    from dissect.columns.segment import TcpOptions
    o = tuples.make(TcpOptions, (1460, 7, True, None, None, ()))
    assert type(o) is TcpOptions and o == TcpOptions(1460, 7, True) and o.wscale == 7


def test_a_non_tuple_given_as_a_segment_is_a_type_error_not_a_crash():
    """dissect.tuples.view types its argument as a tuple for C reads: anything else must
    raise (compiled or not), never be read as one."""
    from dissect.analysis.reassembly import StreamReassembler
    from dissect.analysis.tcp import TcpAnalyzer
    with pytest.raises(TypeError):
        StreamReassembler().push(0, object())
    with pytest.raises(TypeError):
        TcpAnalyzer().feed(None)
