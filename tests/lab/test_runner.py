"""Every lab scenario runs for real, and tshark sees what the ground truth says happened.

Each scenario runs once per session (fast parameters) inside its own namespace; the
tests then read the capture with tshark: the application content must be visible in
tshark's own fields, every address must be loopback, the namespace and every process
must be gone, and the client's recorded times must line up with the packets.
"""

from __future__ import annotations

import ipaddress

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dissect.errors import RefusedError
from dissect.lab import netns
from dissect.lab.runner import loss_positions, run_scenario
from dissect.lab.scenarios import SCENARIOS

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or bool(netns.missing_privileges())
    or shutil.which("tcpdump") is None or shutil.which("tshark") is None,
    reason="the lab needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), iproute2, tcpdump and tshark")

CLOCK_SLACK_S = 0.02  # client clock vs kernel packet stamps: same realtime clock, scheduling noise

_RUNS: dict[str, object] = {}


@pytest.fixture(scope="session")
def lab_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("lab")


def lab(name: str, lab_dir: Path):
    """Run scenario `name` once per session (fast parameters); skip if its deps are missing."""
    if name not in _RUNS:
        missing = [m for m in SCENARIOS[name].requires if importlib.util.find_spec(m) is None]
        if missing:
            pytest.skip(f"scenario {name} needs Python package(s) {missing}")
        _RUNS[name] = run_scenario(name, lab_dir / f"{name}.pcap", seed=1, fast=True)
    return _RUNS[name]


def tshark(path, *fields, filt=None, extra=(), agg=",") -> list[list[str]]:
    args = ["tshark", "-n", "-r", str(path), *extra]
    if filt:
        args += ["-Y", filt]
    args += ["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", f"aggregator={agg}"]
    for f in fields:
        args += ["-e", f]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line.split("\t") for line in proc.stdout.splitlines()]


def column(rows, i=0) -> list[str]:
    return [r[i] for r in rows if len(r) > i and r[i] != ""]


def decode_args(result) -> tuple[str, ...]:
    out: list[str] = []
    for selector, proto in result.truth["decode_as"].items():
        out += ["-d", f"{selector},{proto}"]
    return tuple(out)


# -- common properties of every scenario ---------------------------------------------

@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_capture_is_readable_loopback_only_and_everything_is_cleaned_up(name, lab_dir):
    result = lab(name, lab_dir)
    truth = result.truth
    assert result.pcap.exists() and result.truth_path.exists()
    rows = tshark(result.pcap, "frame.number", "ip.addr", "ipv6.addr")
    assert len(rows) == truth["capture"]["captured"] > 0
    addrs = {a for r in rows for col in r[1:] for a in col.split(",") if a}
    assert addrs and all(ipaddress.ip_address(a).is_loopback for a in addrs), addrs
    assert truth["capture"]["dropped_by_kernel"] == 0
    assert result.pcap.stat().st_size < 1_000_000
    # the namespace and every process of the run are gone
    assert truth["namespace"]["name"] not in netns.list_lab_namespaces()
    for role in ("client", "server"):
        if truth[role]:
            assert not Path(f"/proc/{truth[role]['pid']}").exists(), role
    leftovers = subprocess.run(["pgrep", "-f", "dissect-lab-|dissect\\.lab\\.(server|client)"],
                               capture_output=True, text=True).stdout.split()
    assert [p for p in leftovers if int(p) != os.getpid()] == []
    assert truth["client"]["outcome"] and not truth["client"]["outcome"].startswith("error")
    assert truth["namespace"]["mtu"] == 1500


# -- application content, per scenario -------------------------------------------------

def test_http_keepalive_requests_visible(lab_dir):
    r = lab("http", lab_dir)
    rows = tshark(r.pcap, "http.request.method", "http.request.uri", "http.response.code",
                  "tcp.stream", filt="http")
    methods = column(rows, 0)
    assert methods == [x["method"] for x in r.truth["client"]["records"]]
    assert column(rows, 2) == [str(x["status"]) for x in r.truth["client"]["records"]]
    assert set(column(rows, 3)) == {"0"}  # one keep-alive connection
    assert len({x["local_port"] for x in r.truth["client"]["records"]}) == 1


def test_https_sni_alpn_visible_and_keylog_decrypts(lab_dir, tmp_path):
    r = lab("https", lab_dir)
    rows = tshark(r.pcap, "tls.handshake.extensions_server_name",
                  "tls.handshake.extensions_alpn_str", filt="tls.handshake.type == 1")
    assert rows == [["dissect.test", "http/1.1"]]
    keylog = tmp_path / "keys.log"
    keylog.write_text("\n".join(r.truth["client"]["info"]["tls_keylog"]) + "\n")
    rows = tshark(r.pcap, "http.request.method", extra=("-o", f"tls.keylog_file:{keylog}"),
                  filt="http.request")
    assert column(rows) == ["GET", "GET", "GET", "POST", "GET"]


@pytest.mark.parametrize("name,mode_cmd", [("ftp-active", "PORT"), ("ftp-passive", "PASV")])
def test_ftp_commands_visible(name, mode_cmd, lab_dir):
    r = lab(name, lab_dir)
    cmds = column(tshark(r.pcap, "ftp.request.command", filt="ftp.request"))
    for c in ("USER", "PASS", "PWD", "LIST", "RETR", "STOR", "QUIT", mode_cmd):
        assert c in cmds, (c, cmds)
    assert cmds.count(mode_cmd) == 3  # one per transfer
    assert ("PASV" if mode_cmd == "PORT" else "PORT") not in cmds
    streams = set(column(tshark(r.pcap, "tcp.stream")))
    assert len(streams) == 4  # control + three data connections
    assert r.truth["client"]["info"]["retr_ok"] is True


def test_smtp_commands_visible(lab_dir):
    r = lab("smtp", lab_dir)
    rows = tshark(r.pcap, "smtp.req.command", "smtp.req.parameter", filt="smtp.req")
    cmds = [c.upper() for c in column(rows)]
    assert cmds == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]
    params = column(rows, 1)
    assert any("bob@dissect.test" in p for p in params)
    assert any("carol@dissect.test" in p for p in params)
    codes = column(tshark(r.pcap, "smtp.response.code", filt="smtp.response"))
    assert "354" in codes and codes[-1] == "221"
    assert r.truth["server"]["records"][0]["rcpt_tos"] == ["bob@dissect.test",
                                                         "carol@dissect.test"]


def test_dns_names_and_the_resend_visible(lab_dir):
    r = lab("dns", lab_dir)
    rows = tshark(r.pcap, "dns.qry.name", "dns.flags.response", "dns.retransmission",
                  "dns.flags.rcode", "frame.time_epoch")
    names = set(column(rows))
    assert {"www.dissect.test", "mail.dissect.test", "slow.dissect.test",
            "missing.dissect.test"} <= names
    resent = [row for row in rows if row[2] == "1"]
    assert len(resent) == 1 and resent[0][0] == "slow.dissect.test"
    assert any(row[1] == "1" and row[3] == "3" for row in rows)  # NXDOMAIN
    slow = [a for a in r.truth["client"]["records"] if a["chain"] == "slow.dissect.test A"]
    assert [a["outcome"] for a in slow] == ["timeout", "answered"]
    queries = [float(row[4]) for row in rows if row[0] == "slow.dissect.test" and row[1] == "0"]
    assert len(queries) == 2
    assert abs((queries[1] - queries[0]) - slow[1]["gap_s"]) < CLOCK_SLACK_S


def test_udp_echo_datagrams_visible(lab_dir):
    r = lab("udp", lab_dir)
    rows = tshark(r.pcap, "udp.dstport", "udp.length", filt="udp")
    sent = [x["bytes"] for x in r.truth["client"]["records"]]
    to_server = [int(row[1]) - 8 for row in rows if row[0] == "7"]
    assert to_server == sent
    assert len(rows) == 2 * len(sent)


def test_websocket_opcodes_visible(lab_dir):
    r = lab("websocket", lab_dir)
    assert "101" in column(tshark(r.pcap, "http.response.code", filt="http.response"))
    rows = tshark(r.pcap, "websocket.opcode", "websocket.mask", filt="websocket")
    ops = column(rows)
    for op in ("1", "2", "9", "10", "8"):
        assert op in ops, ops
    client_frames = [row for row in rows if row[1] == "1"]
    assert [row[0] for row in client_frames] == ["1", "2", "9", "8"]  # the client masks


def test_grpc_calls_visible_as_http2(lab_dir):
    r = lab("grpc", lab_dir)
    extra = decode_args(r)
    assert extra == ("-d", "tcp.port==50051,http2")
    rows = tshark(r.pcap, "http2.header.value", "http2.streamid", extra=extra,
                  filt="http2.type == 1")
    joined = " ".join(row[0] for row in rows)
    assert joined.count("/dissect.lab.Echo/Say") == 3 and "/dissect.lab.Echo/Count" in joined
    assert "application/grpc" in joined
    # the NOT_FOUND call ends with grpc-status 5 in its trailers
    names = tshark(r.pcap, "http2.header.name", "http2.header.value", extra=extra,
                   filt="http2.type == 1", agg="|")
    statuses = []
    for n, v in names:
        pairs = dict(zip(n.split("|"), v.split("|")))
        if "grpc-status" in pairs:
            statuses.append(pairs["grpc-status"])
    assert statuses.count("5") == 1 and statuses.count("0") == 3
    assert len(column(tshark(r.pcap, "grpc.message_length", extra=extra, filt="grpc"))) >= 8


@pytest.mark.parametrize("name,expected_gaps", [("syn-backoff", [1, 1, 1]),
                                                ("syn-backoff-classic", [1, 2])])
def test_syn_backoff_attempts_match_the_capture(name, expected_gaps, lab_dir):
    r = lab(name, lab_dir)
    client = r.truth["client"]
    attempts = [x for x in client["records"] if x["kind"] == "attempt"]
    rows = tshark(r.pcap, "frame.time_epoch", "tcp.analysis.retransmission",
                  filt="tcp.flags.syn == 1 && tcp.flags.ack == 0")
    syn_times = [float(row[0]) for row in rows]
    assert len(syn_times) == len(attempts) == client["records"][-1]["syns_sent"]
    assert [row[1] for row in rows[1:]] == ["1"] * (len(rows) - 1)
    gaps = [b - a for a, b in zip(syn_times, syn_times[1:])]
    assert [round(g) for g in gaps] == expected_gaps
    for t, a in zip(syn_times[1:], attempts[1:]):  # observed within a poll of the packet
        assert -0.005 <= a["start"] - t < 0.05
    assert client["policy"]["tcp_syn_linear_timeouts"] == int(
        r.truth["namespace"]["sysctls"]["net.ipv4.tcp_syn_linear_timeouts"])
    assert "client gave up after 4" in client["outcome"]
    assert not tshark(r.pcap, "frame.number", filt="tcp.flags.syn == 1 && tcp.flags.ack == 1")


@pytest.mark.parametrize("name", ["http-retry", "http-retry-post"])
def test_http_retry_attempts_match_the_capture(name, lab_dir):
    r = lab(name, lab_dir)
    client = r.truth["client"]
    attempts = [x for x in client["records"] if x["kind"] == "attempt"]
    rows = tshark(r.pcap, "frame.time_epoch", "http.request.method", "http.response.code",
                  "tcp.stream", filt="http")
    requests = [row for row in rows if row[1]]
    responses = [row for row in rows if row[2]]
    extra = [x for x in client["records"] if x["kind"] == "duplicate"]
    assert len(requests) == len(attempts) + len(extra)
    assert [row[2] for row in responses] == [str(x["status"]) for x in attempts + extra]
    assert len({row[3] for row in requests}) == len(requests)  # a connection per attempt
    for row, a in zip(requests, attempts):
        assert a["start"] - CLOCK_SLACK_S <= float(row[0]) <= a["end"] + CLOCK_SLACK_S
    for a in attempts[:-1]:
        assert a["decision"] == "retry"
        assert 0 <= a["jitter_drawn_s"] <= a["backoff_ceiling_s"]
    for prev, a in zip(attempts, attempts[1:]):
        assert a["wait_s"] >= prev["delay_s"] - 0.002
    assert attempts[-1]["decision"] == "success"
    if name == "http-retry":
        assert attempts[0]["retry_after"] == "1" and attempts[0]["delay_s"] == 1.0
    else:
        key = client["policy"]["idempotency_key"]
        lines = tshark(r.pcap, "http.request.line", filt="http.request")
        assert all(any(key in part for part in row[0].split(",")) for row in lines)
        assert extra and extra[0]["idempotent_replayed"] is True and extra[0]["status"] == 201


def test_circuit_breaker_calls_and_silence_match_the_capture(lab_dir):
    r = lab("circuit-breaker", lab_dir)
    client = r.truth["client"]
    calls = client["records"]
    refused = [c for c in calls if c.get("error") == "connection refused"]
    answered = [c for c in calls if c.get("status")]
    short = [c for c in calls if c["action"] == "short-circuit"]
    assert len(refused) >= 3 and short and answered
    rst = tshark(r.pcap, "frame.time_epoch", filt="tcp.flags.reset == 1 && tcp.srcport == 80")
    assert len(rst) == len(refused)
    codes = column(tshark(r.pcap, "http.response.code", filt="http.response"))
    assert codes == [str(c["status"]) for c in answered]
    assert "503" in codes and codes[-1] == "200"
    # while open: no SYN at all
    syns = [float(row[0]) for row in tshark(r.pcap, "frame.time_epoch",
                                           filt="tcp.flags.syn == 1 && tcp.flags.ack == 0")]
    assert len(syns) == len(calls) - len(short)
    trans = client["transitions"]
    for opened, half in zip(trans, trans[1:]):
        if opened["to"] == "open" and half["to"] == "half-open":
            quiet = [t for t in syns if opened["t"] + 0.001 < t < half["t"] - 0.001]
            assert quiet == [], (opened, half)
            assert half["t"] - opened["t"] >= client["policy"]["open_s"]
    assert [t["to"] for t in trans][:1] == ["open"] and trans[-1]["to"] == "closed"


# -- loss, refusal ----------------------------------------------------------------------

def _udp_expectation(positions: set[int], count: int) -> tuple[list[str], int]:
    """What the echo client sees and how many packets exist when `positions` are dropped."""
    idx, outcomes, packets = 0, [], 0
    for _ in range(count):
        packets += 1
        if idx in positions:
            outcomes.append("timeout")
            idx += 1
            continue
        idx += 1
        packets += 1
        outcomes.append("timeout" if idx in positions else "echoed")
        idx += 1
    return outcomes, packets


def test_loss_drops_exactly_the_seeded_packets_and_leaves_them_in_the_capture(tmp_path):
    count = SCENARIOS["udp"].params["count"]
    seed = next(s for s in range(200)
                if len([p for p in loss_positions(10, s) if p < 2 * count]) == 1)
    positions = set(loss_positions(10, seed))
    outcomes, packets = _udp_expectation(positions, count)
    r = run_scenario("udp", tmp_path / "udp-loss.pcap", loss=10, seed=seed)
    assert [x["outcome"] for x in r.truth["client"]["records"]] == outcomes
    assert r.truth["loss"]["dropped_packets"] == 1
    assert r.truth["loss"]["positions"] == sorted(positions)
    assert "numgen inc mod 1000" in r.truth["namespace"]["nft_ruleset"]
    assert len(tshark(r.pcap, "frame.number")) == packets
    assert r.truth["namespace"]["name"] not in netns.list_lab_namespaces()


def test_existing_output_is_refused_without_force(tmp_path):
    out = tmp_path / "x.pcap"
    out.write_bytes(b"keep me")
    with pytest.raises(RefusedError, match="--force"):
        run_scenario("udp", out)
    assert out.read_bytes() == b"keep me"


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_mid_run_removes_namespace_children_and_partial_output(sig, tmp_path):
    import signal
    import sys
    import time

    out = tmp_path / "interrupted.pcap"
    code = ("from dissect.lab.runner import run_scenario; "
            f"run_scenario('syn-backoff', {str(out)!r}, fast=True)")
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(repo)))
    try:
        prefix = f"{netns.NAME_PREFIX}{proc.pid}-"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            busy = subprocess.run(["pgrep", "-f", "dissect\\.lab\\.client syn-backoff"],
                                  capture_output=True, text=True).stdout.split()
            if busy and any(n.startswith(prefix) for n in netns.list_lab_namespaces()):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the run never reached its client")
        proc.send_signal(getattr(signal, sig))
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "LabInterrupted" in err and sig in err
    assert not any(n.startswith(prefix) for n in netns.list_lab_namespaces())
    leftovers = subprocess.run(["pgrep", "-f", "dissect-lab-|dissect\\.lab\\.(server|client)"],
                               capture_output=True, text=True).stdout.split()
    assert leftovers == []
    assert not out.exists() and not out.with_suffix(".json").exists()
