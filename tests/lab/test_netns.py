"""Namespaces: created private, configured, and gone on every exit path."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dissect.errors import ExitCode, PrivilegeError
from dissect.lab import netns
from dissect.lab.netns import Namespace, list_lab_namespaces, remove_stale_namespaces

REPO = Path(__file__).resolve().parents[2]
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or netns.missing_privileges(),
    reason="needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2 for network namespaces")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_missing_capabilities_raise_privilege_error_saying_what_and_how(monkeypatch):
    monkeypatch.setattr(netns, "_effective_caps", lambda: 0)
    with pytest.raises(PrivilegeError) as err:
        Namespace().open()
    msg = str(err.value)
    assert "CAP_NET_ADMIN" in msg and "CAP_SYS_ADMIN" in msg and "root" in msg
    assert err.value.exit_code == ExitCode.NEED_PRIVILEGE


@needs_root
def test_namespace_has_only_loopback_with_realistic_segments_and_is_deleted():
    host = Path("/proc/sys/net/ipv4/tcp_syn_linear_timeouts")
    host_before = host.read_text() if host.exists() else None
    with Namespace() as ns:
        assert ns.name in list_lab_namespaces()
        links = ns.exec_check(["ip", "-d", "link", "show"])
        assert links.count(": <") == 1 and "lo:" in links
        assert "mtu 1500" in links and "gso_max_size 1500" in links and "gso_max_segs 1" in links
        assert "127.0.0.1" in ns.exec_check(["ip", "addr", "show", "lo"])
        assert ns.exec_check(["ip", "route", "show"]).strip() == ""  # no way out
        new = "0" if host_before is None or host_before.strip() != "0" else "2"
        ns.sysctl("net.ipv4.tcp_syn_linear_timeouts", new)
        assert ns.read_sysctl("net.ipv4.tcp_syn_linear_timeouts") == new
        if host_before is not None:  # the sysctl is the namespace's own
            assert host.read_text() == host_before
        name = ns.name
    assert name not in list_lab_namespaces()


@needs_root
def test_children_are_killed_and_namespace_removed_when_an_error_escapes():
    with pytest.raises(RuntimeError):
        with Namespace() as ns:
            child = ns.spawn(["sleep", "60"])
            name, pid = ns.name, child.pid
            ns.nft("table inet t {\n chain c {\n  type filter hook input priority 0;\n }\n}\n")
            assert "hook input" in ns.nft_list()
            raise RuntimeError("boom")
    assert not _alive(pid)
    assert name not in list_lab_namespaces()


@needs_root
def test_sigterm_during_a_run_cleans_up_namespace_and_children(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        from dissect.lab.netns import Namespace, signals_raise
        with signals_raise(), Namespace() as ns:
            child = ns.spawn(["sleep", "60"])
            print(ns.name, child.pid, flush=True)
            time.sleep(60)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        name, pid = proc.stdout.readline().split()
        assert name in list_lab_namespaces() and _alive(int(pid))
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "LabInterrupted" in err and "SIGTERM" in err
    assert name not in list_lab_namespaces()
    deadline = time.monotonic() + 5
    while _alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(int(pid))


@needs_root
def test_stale_namespaces_of_dead_processes_are_removed():
    dead_pid = 4194300  # above any pid this short-lived test machine hands out
    assert not Path(f"/proc/{dead_pid}").exists()
    name = f"{netns.NAME_PREFIX}{dead_pid}-abcdef"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert name in remove_stale_namespaces()
        assert name not in list_lab_namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@needs_root
def test_python_code_runs_inside_and_sees_only_loopback():
    with Namespace() as ns:
        out = ns.run_python("import socket; print(socket.if_nameindex())",
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert out.strip() == "[(1, 'lo')]"
        with pytest.raises(netns.LabError, match="failed"):
            ns.run_python("raise SystemExit(4)")
        assert ns.children == []
