"""``dissect capture``: each loopback packet once (as tcpdump sees it), live lines, -w."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

import pytest

from dissect.craft import capture as capmod
from dissect.errors import ExitCode
from dissect.io.capture import read_frames
from tests.conftest import needs_root, needs_tcpdump, needs_tshark, tshark_fields

TRAFFIC = r'''
import socket, time
l = socket.socket(); l.bind(("127.0.0.1", 9999)); l.listen()
c = socket.create_connection(("127.0.0.1", 9999)); s, _ = l.accept()
c.sendall(b"hello"); s.recv(16); s.sendall(b"world"); c.recv(16)
c.close(); s.close(); time.sleep(0.2)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b"x", ("127.0.0.1", 9998))
'''


@pytest.fixture
def ns():
    name = f"dctest-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        for pid in subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                                  text=True, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", name], check=False)


def _env():
    return dict(os.environ, PYTHONPATH=os.getcwd())


def _ready_wait(path_check, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not path_check():
        time.sleep(0.05)


@needs_root
@needs_tcpdump
@needs_tshark
def test_capture_sees_each_packet_once_like_tcpdump(tmp_path, ns):
    ours, theirs = tmp_path / "ours.pcap", tmp_path / "tcpdump.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-i", "lo", "-n", "-U",
                             "--immediate-mode", "-B", "16384", "-s", "0", "-w", str(theirs),
                             "tcp port 9999"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert b"listening" in dump.stderr.readline()
    cap = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "dissect.cli",
                            "capture", "-i", "lo", "-f", "tcp port 9999", "--duration", "3",
                            "-w", str(ours)], env=_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    _ready_wait(ours.exists)
    time.sleep(0.3)
    subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", TRAFFIC], check=True,
                   timeout=30)
    so, se = cap.communicate(timeout=30)
    dump.send_signal(signal.SIGINT)
    dump.wait(10)
    assert cap.returncode == 0, se
    mine = [f.data for f in read_frames(str(ours))]
    ref = [f.data for f in read_frames(str(theirs))]
    assert len(ref) >= 8
    assert mine == ref                       # same packets, once each, same order
    lines = so.decode().splitlines()
    pkt_lines = [ln for ln in lines if "L4 tcp" in ln]
    assert len(pkt_lines) == len(ref)
    assert "L2 eth · L3 ip · L4 tcp" in pkt_lines[0] and "[SYN]" in pkt_lines[0]
    assert "→ 127.0.0.1:9999" in pkt_lines[0]
    assert any("L7" in ln and "len=5" in ln for ln in pkt_lines)
    assert f"{len(ref)} packets" in se.decode() and "wrote" in se.decode()
    assert "capturing:" not in se.decode()   # stderr is no terminal: no progress line
    assert tshark_fields(ours, ["frame.number"])[-1] == [str(len(ref))]


@needs_root
def test_capture_count_stops_and_quiet_prints_no_packets(tmp_path, ns):
    out = tmp_path / "c.pcap"
    cap = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "dissect.cli",
                            "capture", "-i", "lo", "-c", "3", "--quiet", "--duration", "20",
                            "-w", str(out)], env=_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    _ready_wait(out.exists)
    time.sleep(0.3)
    subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", TRAFFIC], check=True,
                   timeout=30)
    so, se = cap.communicate(timeout=30)
    assert cap.returncode == 0, se
    assert so == b""
    assert b"3 packets" in se and b"stopped: 3 packets" in se
    assert len(list(read_frames(str(out)))) == 3


@needs_root
def test_capture_ctrl_c_closes_a_complete_file(tmp_path, ns):
    out = tmp_path / "i.pcap"
    cap = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "dissect.cli",
                            "capture", "-i", "lo", "-w", str(out)], env=_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _ready_wait(out.exists)
    time.sleep(0.3)
    subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", TRAFFIC], check=True,
                   timeout=30)
    time.sleep(0.3)
    cap.send_signal(signal.SIGINT)
    _so, se = cap.communicate(timeout=30)
    assert cap.returncode == 0, se
    assert b"stopped: SIGINT" in se
    assert len(list(read_frames(str(out)))) >= 9        # tcp exchange + the udp datagram


def test_capture_refuses_to_overwrite_before_listening(tmp_path, monkeypatch, capsys):
    from dissect.cli import main
    from dissect.craft import safety
    out = tmp_path / "exists.pcap"
    out.write_bytes(b"keep")
    monkeypatch.setattr(safety, "effective_caps", lambda: (1 << 40) - 1)

    def no_tap(*a, **k):
        raise AssertionError("opened a tap before refusing")
    monkeypatch.setattr("dissect.craft.tap.Tap", no_tap)
    with pytest.raises(SystemExit) as e:
        main(["capture", "-i", "lo", "-c", "1", "-w", str(out)])
    assert e.value.code == ExitCode.REFUSED
    assert out.read_bytes() == b"keep"
    assert "--force" in capsys.readouterr().err


@needs_root
def test_capture_unknown_interface_is_our_error(capsys):
    from dissect.cli import main
    with pytest.raises(SystemExit) as e:
        main(["capture", "-i", "nosuchif0", "-c", "1"])
    assert e.value.code == ExitCode.UNAVAILABLE
    assert "no interface named 'nosuchif0'" in capsys.readouterr().err


def test_progress_line_redraws_one_line(capsys):
    capmod.progress_line(capmod.CaptureStats(packets=12, bytes=3400, seconds=1.25))
    err = capsys.readouterr().err
    assert err.startswith("\r\x1b[K") and "12 packets, 3400 bytes, 1.2 s" in err
    assert "\n" not in err
