"""Run a crafted exchange for real and clean up on every exit path.

Two ways to keep the kernel from resetting a connection it has no socket for (the
crafted client's SYN-ACK, data and FIN reach the same kernel, which answers each with
RST):

* ``--listen``: a **private network namespace** (``dcraft-<pid>-<hex>``) with only ``lo``
  (MTU 1500, no GSO, so a segment is a packet). Inside it an nftables table drops the
  kernel's RSTs from the crafted client port on the output hook, the listener (a real
  socket server) runs, and the Scapy worker sends, receives and records. Deleting the
  namespace removes the table with it.
* otherwise the listener is someone else's, in the current namespace: a **temporary
  nftables table** ``dissect_craft_<pid>_<hex>`` with the same single rule is added and
  deleted again in ``finally`` (SIGINT and SIGTERM raise there, and an atexit hook covers
  the rest). Tables and namespaces left by a SIGKILLed run (their pid is gone) are removed
  at the start of the next run.

The rule matches only plain RSTs (RST without ACK): the kernel answers every segment of
ours that carries ACK with exactly that, while the worker's own RST teardown is RST+ACK
(and goes out on a packet socket that netfilter does not see anyway).
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import dissect
from dissect.craft.safety import (
    CAP_NET_ADMIN,
    CAP_NET_RAW,
    CAP_SYS_ADMIN,
    CraftError,
    check_destination,
    require_caps,
    require_tool,
)
from dissect.errors import RefusedError

NS_PREFIX = "dcraft-"
NFT_PREFIX = "dissect_craft_"
NFT_TABLE_IN_NS = "dissect_craft"
# Named limits (seconds).
LISTENER_READY_TIMEOUT_S = 10.0   # python start-up and bind: well under a second
WORKER_TIMEOUT_S = 30.0           # the worker's own waits add up to about 10 s
COMMAND_TIMEOUT_S = 20.0          # one ip/nft call: milliseconds
EPHEMERAL = (32768, 60999)        # Linux's default ip_local_port_range


@dataclass
class LiveResult:
    pcap: Path
    result: dict
    spec: dict
    where: str            # "namespace dcraft-..." or "current namespace (nft table ...)"
    listener: str | None


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    root = str(Path(dissect.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(argv: list[str], input_text: str | None = None) -> str:
    try:
        p = subprocess.run(argv, input=input_text, capture_output=True, text=True,
                           timeout=COMMAND_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise CraftError(f"`{' '.join(argv)}` did not finish in {COMMAND_TIMEOUT_S:.0f} s",
                         protocol="craft") from None
    if p.returncode != 0:
        raise CraftError(f"`{' '.join(argv)}` failed ({p.returncode}): "
                         f"{(p.stderr or p.stdout).strip()}", protocol="craft")
    return p.stdout


def rst_rule(src: str, sport: int, dst: str, dport: int) -> str:
    fam = "ip6" if ":" in dst else "ip"
    return (f"{fam} saddr {src} {fam} daddr {dst} tcp sport {sport} tcp dport {dport} "
            "tcp flags & (rst | ack) == rst counter drop")


def nft_ruleset(table: str, rule: str) -> str:
    return (f"table inet {table} {{\n  chain output {{\n"
            f"    type filter hook output priority 0; policy accept;\n    {rule}\n  }}\n}}\n")


# ------------------------------------------------------------------ signals and leftovers

@contextlib.contextmanager
def signals_interrupt():
    """While active, SIGTERM (like SIGINT) raises KeyboardInterrupt, so every ``finally``
    runs; the CLI reports it as 'interrupted' (exit 130)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def craft_namespaces() -> list[str]:
    d = Path("/var/run/netns")
    return sorted(p.name for p in d.iterdir() if p.name.startswith(NS_PREFIX)) if d.is_dir() else []


def craft_nft_tables() -> list[str]:
    nft = shutil.which("nft") or "/usr/sbin/nft"
    try:
        out = subprocess.run([nft, "list", "tables"], capture_output=True, text=True,
                             timeout=COMMAND_TIMEOUT_S, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return re.findall(rf"^table inet ({NFT_PREFIX}\w+)$", out, re.MULTILINE)


def remove_stale() -> list[str]:
    """Delete namespaces and nft tables of earlier runs whose process is gone."""
    removed = []
    for name in craft_namespaces():
        m = re.match(rf"{NS_PREFIX}(\d+)-", name)
        if m and not _pid_alive(int(m.group(1))):
            _delete_namespace(name)
            removed.append(name)
    for table in craft_nft_tables():
        m = re.match(rf"{NFT_PREFIX}(\d+)_", table)
        if m and not _pid_alive(int(m.group(1))):
            with contextlib.suppress(CraftError):
                _run(["nft", "delete", "table", "inet", table])
            removed.append(table)
    return removed


def _delete_namespace(name: str) -> None:
    try:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S, check=False).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        pids = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    with contextlib.suppress(CraftError):
        _run(["ip", "netns", "del", name])


_CLEANUPS: dict[int, callable] = {}


@contextlib.contextmanager
def _shielded():
    """Hold SIGINT/SIGTERM while cleaning up (a second Ctrl-C must not cut a cleanup
    short); a signal that arrives meanwhile is delivered right after."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@atexit.register
def _run_cleanups() -> None:
    for key in list(_CLEANUPS):
        fn = _CLEANUPS.pop(key, None)
        if fn is not None:
            with contextlib.suppress(Exception):
                fn()


class Namespace:
    """A private network namespace with only lo; children killed by process group."""

    def __init__(self, mtu: int = 1500):
        self.name = f"{NS_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self.mtu = mtu
        self.children: list[subprocess.Popen] = []
        self.created = False

    def __enter__(self) -> Self:
        # Marked created (and registered for cleanup) before the command runs: an
        # interrupt landing while `ip netns add` returns must still delete it.
        self.created = True
        _CLEANUPS[id(self)] = self.close
        try:
            _run(["ip", "netns", "add", self.name])
            self.run(["ip", "link", "set", "lo", "up"])
            self.run(["ip", "link", "set", "lo", "mtu", str(self.mtu), "gso_max_size",
                      str(self.mtu), "gso_max_segs", "1"])
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: list[str], input_text: str | None = None) -> str:
        return _run(self.argv(argv), input_text)

    def spawn(self, argv: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(self.argv(argv), stdin=subprocess.DEVNULL,
                             start_new_session=True, **kw)
        self.children.append(p)
        return p

    def close(self) -> None:
        with _shielded():
            for p in reversed(self.children):
                kill(p)
            self.children.clear()
            if self.created:
                _delete_namespace(self.name)
                self.created = False
            _CLEANUPS.pop(id(self), None)


class HostTable:
    """A temporary nftables table in the current namespace, deleted on every exit path."""

    def __init__(self, rule: str):
        self.name = f"{NFT_PREFIX}{os.getpid()}_{secrets.token_hex(3)}"
        self.rule = rule
        self.added = False

    def __enter__(self) -> Self:
        self.added = True          # before the command: see Namespace.__enter__
        _CLEANUPS[id(self)] = self.close
        try:
            _run(["nft", "-f", "-"], nft_ruleset(self.name, self.rule))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with _shielded():
            if self.added:
                with contextlib.suppress(CraftError):
                    _run(["nft", "delete", "table", "inet", self.name])
                self.added = False
            _CLEANUPS.pop(id(self), None)


def kill(p: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM the child's process group (its pid), then SIGKILL after ``grace``."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=grace)
    for s in (p.stdout, p.stderr):
        if s is not None:
            with contextlib.suppress(OSError):
                s.close()


def _wait_ready(p: subprocess.Popen, timeout: float) -> str:
    box: list[str] = []
    done = threading.Event()

    def reader():
        with contextlib.suppress(OSError, ValueError):
            for raw in p.stdout:
                line = raw.decode(errors="replace").strip()
                if line.startswith("READY"):
                    box.append(line)
                    break
        done.set()

    threading.Thread(target=reader, daemon=True).start()
    done.wait(timeout)
    if box:
        return box[0]
    err = ""
    if p.poll() is not None and p.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            err = p.stderr.read().decode(errors="replace")[-1500:]
    raise CraftError(f"the listener did not start within {timeout:.0f} s: {err.strip()}",
                     protocol="craft")


def _port_free(host: str, port: int, udp: bool) -> bool:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# ------------------------------------------------------------------ the run

def required_caps(proto: str, listen: bool) -> tuple[int, ...]:
    if listen:
        return (CAP_NET_RAW, CAP_NET_ADMIN, CAP_SYS_ADMIN)
    if proto == "tcp":
        return (CAP_NET_RAW, CAP_NET_ADMIN)
    return (CAP_NET_RAW,)


def preflight(*, proto: str, dst: str, listen: bool, allow_remote: bool,
              command: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Every refusal, before any socket or namespace exists."""
    addr = check_destination(dst, allow_remote)
    if listen and not addr.is_loopback:
        raise RefusedError("--listen serves on loopback only; it cannot be combined with a "
                           f"remote destination ({dst})", protocol="craft")
    require_caps(required_caps(proto, listen), command)
    if listen:
        require_tool("ip", "iproute2")
    if proto == "tcp":
        require_tool("nft", "nftables")
    return addr


def _source_for(dst: str) -> tuple[str, str]:
    """(iface, source address) the kernel would use towards ``dst``."""
    addr = ipaddress.ip_address(dst)
    if addr.is_loopback:
        return "lo", dst
    fam = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.connect((dst, 9))          # UDP connect: a route lookup, no packet sent
        src = s.getsockname()[0]
    out = _run(["ip", "-o", "route", "get", dst])
    m = re.search(r"\bdev (\S+)", out)
    if not m:
        raise CraftError(f"no route to {dst}", protocol="craft")
    return m.group(1), src


@contextlib.contextmanager
def run_live(*, proto: str, dst: str, dport: int, sport: int | None, app: str | None,
             request: bytes, teardown: str = "fin", listen: bool = False,
             allow_remote: bool = False, seed: int | None = None, command: str = "craft"):
    """Carry out the exchange; yields a :class:`LiveResult` whose pcap lives until exit."""
    preflight(proto=proto, dst=dst, listen=listen, allow_remote=allow_remote, command=command)
    workdir = Path(tempfile.mkdtemp(prefix="dissect-craft-"))
    rng = random.Random(seed) if seed is not None else random.SystemRandom()
    udp = proto == "udp"
    env = _env()
    try:
        with signals_interrupt():
            remove_stale()
            iface, src = ("lo", dst) if listen else _source_for(dst)
            if sport is None:
                for _ in range(64):
                    sport = rng.randint(*EPHEMERAL)
                    if sport != dport and (listen or _port_free(src, sport, udp)):
                        break
            elif not listen and not _port_free(src, sport, udp):
                raise RefusedError(f"source port {sport} is in use on {src}; a crafted "
                                   "connection from it would collide with a real socket",
                                   protocol="craft")
            spec = {"proto": proto, "src": src, "dst": dst, "sport": sport, "dport": dport,
                    "app": app or "raw", "request_hex": request.hex(), "teardown": teardown,
                    "iface": iface, "seed": seed, "keep_all": listen}
            pcap = workdir / "exchange.pcap"
            worker_argv = [sys.executable, "-m", "dissect.craft.worker", "--spec",
                           json.dumps(spec), "--pcap", str(pcap)]
            listener_desc = None
            if listen:
                with Namespace() as ns:
                    if not udp:
                        ns.run(["nft", "-f", "-"], nft_ruleset(
                            NFT_TABLE_IN_NS, rst_rule(src, sport, dst, dport)))
                    lst = ns.spawn([sys.executable, "-m", "dissect.craft.listener", "--app",
                                    app or "raw", "--host", dst, "--port", str(dport)]
                                   + (["--udp"] if udp else []), env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                    _wait_ready(lst, LISTENER_READY_TIMEOUT_S)
                    listener_desc = ("UDP echo" if udp else {
                        "http": "Python http.server (HTTP/1.1)", "ftp": "FTP banner + replies",
                        "smtp": "SMTP banner + replies", "raw": "TCP echo"}[app or "raw"])
                    result = _run_worker(ns.spawn(worker_argv, env=env, stdout=subprocess.PIPE,
                                                  stderr=subprocess.PIPE))
                    where = f"private network namespace {ns.name} (lo, MTU 1500, no GSO)"
            else:
                table = HostTable(rst_rule(src, sport, dst, dport)) if not udp else None
                with (table or contextlib.nullcontext()):
                    p = subprocess.Popen(worker_argv, env=env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         start_new_session=True)
                    try:
                        result = _run_worker(p)
                    finally:
                        kill(p)
                    where = (f"current network namespace, on {iface}"
                             + (f" (temporary nftables table {table.name}, now deleted)"
                                if table else ""))
        yield LiveResult(pcap, result, spec, where, listener_desc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_worker(p: subprocess.Popen) -> dict:
    try:
        out, err = p.communicate(timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        kill(p)
        raise CraftError(f"the crafting worker did not finish within {WORKER_TIMEOUT_S:.0f} s",
                         protocol="craft") from None
    for line in reversed(out.decode(errors="replace").splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = err.decode(errors="replace").strip()[-2000:]
    if "Operation not permitted" in tail or "PermissionError" in tail:
        raise CraftError(f"the kernel refused the crafting worker a raw socket: {tail[-300:]}",
                         protocol="craft")
    raise CraftError(f"the crafting worker failed (exit {p.returncode}): {tail}",
                     protocol="craft")
