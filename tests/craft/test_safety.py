"""Refusals come before any socket: non-loopback destinations, missing privileges."""

from __future__ import annotations

import socket
import subprocess

import pytest

from dissect.craft import safety
from dissect.errors import ExitCode, PrivilegeError, RefusedError


@pytest.mark.parametrize("dst", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_check_destination_accepts_loopback(dst):
    assert safety.check_destination(dst, False).is_loopback or dst.startswith("::ffff")


@pytest.mark.parametrize("dst", ["10.0.0.1", "8.8.8.8", "192.168.1.1", "2001:db8::1",
                                 "::ffff:8.8.8.8", "0.0.0.0"])
def test_check_destination_refuses_remote_without_allow_remote(dst):
    with pytest.raises(RefusedError) as e:
        safety.check_destination(dst, False)
    assert "--allow-remote" in str(e.value)
    assert e.value.exit_code == ExitCode.REFUSED


def test_check_destination_allows_remote_when_asked():
    assert str(safety.check_destination("8.8.8.8", True)) == "8.8.8.8"


def test_check_destination_refuses_host_names():
    with pytest.raises(RefusedError, match="not an IP address"):
        safety.check_destination("localhost", False)


def test_require_caps_names_what_is_missing_and_how_to_get_it():
    with pytest.raises(PrivilegeError) as e:
        safety.require_caps((safety.CAP_NET_RAW, safety.CAP_NET_ADMIN), "craft handshake", caps=0)
    msg = str(e.value)
    assert "CAP_NET_RAW" in msg and "CAP_NET_ADMIN" in msg
    assert "sudo dissect craft handshake" in msg and "setcap on the interpreter is not enough" in msg
    assert e.value.exit_code == ExitCode.NEED_PRIVILEGE
    with pytest.raises(PrivilegeError) as e:
        safety.require_caps((safety.CAP_NET_RAW,), "capture -i lo", caps=0)
    assert "sudo dissect capture -i lo" in str(e.value) and "setcap cap_net_raw+eip" in str(e.value)


def test_require_caps_passes_when_present():
    caps = 1 << safety.CAP_NET_RAW
    safety.require_caps((safety.CAP_NET_RAW,), "capture", caps=caps)
    with pytest.raises(PrivilegeError, match="CAP_SYS_ADMIN"):
        safety.require_caps((safety.CAP_NET_RAW, safety.CAP_SYS_ADMIN), "craft", caps=caps)


class _NoSockets:
    def __init__(self, *a, **k):
        raise AssertionError("a socket was opened before the refusal")


def _forbid_io(monkeypatch):
    monkeypatch.setattr(socket, "socket", _NoSockets)
    monkeypatch.setattr(subprocess, "Popen", _NoSockets)
    monkeypatch.setattr(subprocess, "run", _NoSockets)


def _main(args) -> int:
    from dissect.cli import main
    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code


@pytest.mark.parametrize("dst", ["10.0.0.1", "8.8.8.8"])
@pytest.mark.parametrize("cmd", [["craft", "handshake", "--http", "GET /"],
                                 ["craft", "handshake", "--listen"],
                                 ["craft", "udp", "--payload", "x"]])
def test_cli_refuses_remote_before_any_socket(monkeypatch, capsys, dst, cmd):
    _forbid_io(monkeypatch)
    code = _main([*cmd, "--dst", dst, "--dport", "80"])
    assert code == ExitCode.REFUSED
    assert "not a loopback address" in capsys.readouterr().err


def test_cli_listen_with_remote_is_refused_even_with_allow_remote(monkeypatch, capsys):
    _forbid_io(monkeypatch)
    monkeypatch.setattr(safety, "effective_caps", lambda: (1 << 40) - 1)
    code = _main(["craft", "handshake", "--listen", "--allow-remote", "--dst", "8.8.8.8",
                  "--dport", "80"])
    assert code == ExitCode.REFUSED
    assert "--listen serves on loopback only" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", [["craft", "handshake", "--dport", "80"],
                                 ["craft", "handshake", "--listen", "--dport", "80"],
                                 ["craft", "udp", "--dport", "80", "--payload", "x"],
                                 ["capture", "-i", "lo", "-c", "1"]])
def test_cli_without_privileges_says_what_is_missing(monkeypatch, capsys, cmd):
    _forbid_io(monkeypatch)
    monkeypatch.setattr(safety, "effective_caps", lambda: 0)
    code = _main(cmd)
    assert code == ExitCode.NEED_PRIVILEGE
    err = capsys.readouterr().err
    assert "CAP_NET_RAW" in err and "sudo dissect" in err and "setcap" in err
    if "--listen" in cmd:
        assert "CAP_SYS_ADMIN" in err
