"""Live crafting against real kernel listeners (root; each run in its own namespace).

Every test checks the exchange twice: in dissect's own output and in what tshark reads
from the ``-w`` capture. After each run no ``dcraft-`` namespace and no
``dissect_craft_`` nftables table may be left.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

import pytest

from dissect.errors import ExitCode
from tests.conftest import needs_root, needs_tshark, run_dissect, tshark_fields

pytestmark = [needs_root, needs_tshark,
              pytest.mark.skipif(subprocess.run(["which", "nft"], capture_output=True, check=False).returncode,
                                 reason="nft (nftables) is not installed")]

FIELDS = ["tcp.srcport", "tcp.flags.str", "tcp.seq_raw", "tcp.ack_raw", "tcp.len",
          "tcp.flags.reset"]


def _leftovers(ns: str | None = None) -> tuple[list[str], str]:
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    pre = ["ip", "netns", "exec", ns] if ns else []
    tables = subprocess.run(pre + ["nft", "list", "tables"], capture_output=True, text=True, check=False).stdout
    return [n for n in names.split() if n.startswith("dcraft-")], tables


@pytest.fixture(autouse=True)
def no_leftovers():
    yield
    spaces, tables = _leftovers()
    assert spaces == [], f"namespaces left behind: {spaces}"
    assert "dissect_craft" not in tables


def _craft(tmp_path, *args):
    out = tmp_path / "out.pcap"
    rc, so, se = run_dissect("craft", *args, "-w", out, timeout=60)
    return rc, so, se, out


def _rows(path, decode=None):
    extra = ("-d", decode) if decode else ()
    return tshark_fields(path, FIELDS, extra=extra)


def _check_handshake(rows, sport):
    """SYN, SYN-ACK, ACK with ack = ISN + 1 both ways (tshark's raw numbers)."""
    (c1, f1, isn_c, _a1, *_), (s2, f2, isn_s, ack2, *_), (c3, f3, seq3, ack3, *_) = rows[:3]
    assert (c1, s2, c3) == (str(sport), rows[1][0], str(sport))
    assert "S" in f1 and "A" not in f1.replace("·", "")
    assert "S" in f2 and "A" in f2
    assert int(ack2) == int(isn_c) + 1
    assert int(seq3) == int(isn_c) + 1 and int(ack3) == int(isn_s) + 1
    assert f3.strip("·") == "A"
    return int(isn_c), int(isn_s)


def _sport(rows):
    return int(rows[0][0])


def _flag_names(s):   # tshark's tcp.flags.str, e.g. "·······A·S··"
    return {c for c in s if c != "·"}


@pytest.mark.parametrize("app,arg,port,decode,field,value,answer", [
    ("--http", "GET /", 8080, None, "http.request.method", "GET", "http.response.code"),
    ("--ftp", "USER anonymous", 2121, "tcp.port==2121,ftp", "ftp.request.command", "USER",
     "ftp.response.code"),
    ("--smtp", "HELO x", 2525, "tcp.port==2525,smtp", "smtp.req.command", "HELO",
     "smtp.response.code"),
])
def test_handshake_with_listener_fin_teardown(tmp_path, app, arg, port, decode, field, value,
                                              answer):
    rc, so, se, out = _craft(tmp_path, "handshake", "--listen", "--dport", port, app, arg)
    assert rc == 0, se
    rows = _rows(out, decode)
    sport = _sport(rows)
    isn_c, isn_s = _check_handshake(rows, sport)
    # dissect's own report says the same
    assert f"tcp.seq_raw = {isn_c}" in so and f"tcp.ack_raw = {isn_c + 1}" in so
    assert f"ack={isn_c + 1} (= client ISN+1)" in so and f"ack={isn_s + 1} (= server ISN+1)" in so
    assert "L4 transport" in so and "L3 network" in so and "L2 datalink" in so
    assert "Outcome: connection established" in so and "closed with FIN by the client" in so
    extra = ("-d", decode) if decode else ()
    assert [r[0] for r in tshark_fields(out, [field], extra=extra) if r[0]] == [value]
    codes = [r[0] for r in tshark_fields(out, [answer], extra=extra) if r[0]]
    assert codes[-1] == {"--http": "200", "--ftp": "331", "--smtp": "250"}[app]
    # no RST at all: the kernel's own resets for the crafted connection were suppressed
    assert all(r[5] == "0" for r in rows), rows
    # the teardown: client FIN, server FIN, client's last ACK acknowledging it
    fins = [r for r in rows if "F" in _flag_names(r[1])]
    assert [r[0] for r in fins] == [str(sport), str(port)]
    last = rows[-1]
    assert last[0] == str(sport) and _flag_names(last[1]) == {"A"}
    assert int(last[3]) == int(fins[1][2]) + 1
    # every server byte was acknowledged: tshark sees no analysis problem
    flags = tshark_fields(out, ["tcp.analysis.flags"], extra=("-2",))
    assert all(r[0] == "" for r in flags), flags


def test_handshake_payload_then_rst_teardown(tmp_path):
    rc, so, se, out = _craft(tmp_path, "handshake", "--listen", "--dport", "7007",
                             "--payload-hex", "68656c6c6f", "--teardown", "rst")
    assert rc == 0, se
    rows = _rows(out)
    sport = _sport(rows)
    _check_handshake(rows, sport)
    payloads = [r for r in rows if r[4] not in ("0", "")]
    assert [(r[0], r[4]) for r in payloads] == [(str(sport), "5"), ("7007", "5")]   # echoed
    resets = [r for r in rows if r[5] == "1"]
    assert len(resets) == 1 and resets[0] is rows[-1] and resets[0][0] == str(sport)
    assert "torn down with RST by the client" in so


def test_udp_echo_with_listener(tmp_path):
    rc, so, se, out = _craft(tmp_path, "udp", "--listen", "--dport", "5555", "--payload",
                             "ping")
    assert rc == 0, se
    rows = tshark_fields(out, ["udp.srcport", "udp.dstport", "udp.payload", "icmp.type"])
    assert len(rows) == 2 and rows[0][1] == "5555" and rows[1][0] == "5555"
    assert rows[0][2] == rows[1][2] == b"ping".hex()
    assert "an exact echo" in so


@pytest.fixture
def test_ns():
    """A namespace of the test's own, standing in for 'the current namespace'."""
    name = f"dctest-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    procs = []
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name, procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for pid in subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                                  text=True, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", name], check=False)


def _in_ns(ns, *args, **kw):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, *args], env=env, **kw)


def _start_listener(ns, procs, port, app="raw"):
    p = _in_ns(ns, "-m", "dissect.craft.listener", "--app", app, "--port", str(port),
               stdout=subprocess.PIPE)
    procs.append(p)
    assert p.stdout.readline().startswith(b"READY")


def test_without_listen_uses_a_temporary_nft_table_and_removes_it(tmp_path, test_ns):
    ns, procs = test_ns
    _start_listener(ns, procs, 8081, "http")
    out = tmp_path / "h.pcap"
    p = _in_ns(ns, "-m", "dissect.cli", "craft", "handshake", "--dport", "8081", "--http",
               "GET /", "-w", str(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    so, se = p.communicate(timeout=60)
    assert p.returncode == 0, se
    assert b"temporary nftables table dissect_craft_" in so
    rows = _rows(out)
    _check_handshake(rows, _sport(rows))
    assert all(r[5] == "0" for r in rows)
    assert "dissect_craft" not in _leftovers(ns)[1]


def test_refused_when_nothing_listens(tmp_path, test_ns):
    ns, _procs = test_ns
    p = _in_ns(ns, "-m", "dissect.cli", "craft", "handshake", "--dport", "9", "--brief",
               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    so, se = p.communicate(timeout=60)
    assert p.returncode == ExitCode.UNAVAILABLE
    assert b"answered the SYN with RST" in se and b"RST,ACK" in so
    assert "dissect_craft" not in _leftovers(ns)[1]


def _wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.01)
    return None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_cleans_up_the_namespace(tmp_path, sig):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    p = subprocess.Popen([sys.executable, "-m", "dissect.cli", "craft", "handshake", "--listen",
                          "--dport", "8090", "--smtp", "HELO x"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    mine = f"dcraft-{p.pid}-"
    seen = _wait_for(lambda: [n for n in _leftovers()[0] if n.startswith(mine)])
    assert seen, "the run ended before its namespace could be seen"
    p.send_signal(sig)
    _so, se = p.communicate(timeout=30)
    assert p.returncode == 130, se
    assert b"interrupted" in se
    assert not [n for n in _leftovers()[0] if n.startswith(mine)]


def test_interrupt_removes_the_temporary_table(tmp_path, test_ns):
    ns, procs = test_ns
    _start_listener(ns, procs, 8082)
    # SYNs to 8082 vanish, so the worker waits for a SYN-ACK until interrupted
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], check=True, text=True,
                   input="table inet t {\n chain i {\n type filter hook input priority 0;\n"
                         " tcp dport 8082 drop\n }\n}\n")
    p = _in_ns(ns, "-m", "dissect.cli", "craft", "handshake", "--dport", "8082",
               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert _wait_for(lambda: "dissect_craft_" in _leftovers(ns)[1]), "table never appeared"
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    _so, se = p.communicate(timeout=30)
    assert p.returncode == 130, se
    assert "dissect_craft" not in _leftovers(ns)[1]
    left = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout.split()
    assert sorted(map(int, left)) == sorted(q.pid for q in procs if q.poll() is None)


def test_interrupt_right_after_netns_add_still_deletes_it(monkeypatch):
    from dissect.craft import live
    real = live._run

    def run_then_interrupt(argv, input_text=None):
        out = real(argv, input_text)
        if argv[:3] == ["ip", "netns", "add"]:
            raise KeyboardInterrupt("SIGINT")
        return out
    monkeypatch.setattr(live, "_run", run_then_interrupt)
    ns = live.Namespace()
    with pytest.raises(KeyboardInterrupt):
        ns.__enter__()
    assert ns.name not in _leftovers()[0]


def test_interrupt_right_after_nft_add_still_deletes_the_table(monkeypatch, test_ns):
    from dissect.craft import live
    ns, _procs = test_ns
    real = live._run

    def in_ns(argv, input_text=None):
        out = real(["ip", "netns", "exec", ns, *argv], input_text)
        if argv[:2] == ["nft", "-f"]:
            raise KeyboardInterrupt("SIGINT")
        return out
    monkeypatch.setattr(live, "_run", in_ns)
    with pytest.raises(KeyboardInterrupt), \
            live.HostTable(live.rst_rule("127.0.0.1", 40000, "127.0.0.1", 80)):
        pass
    assert "dissect_craft" not in _leftovers(ns)[1]
