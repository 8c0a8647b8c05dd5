"""Private network namespaces for the lab: create, run inside, clean up on every exit path.

A :class:`Namespace` is a context manager. Entering it checks privileges, creates a
namespace with a unique name (``dlab-<pid>-<hex>``), brings ``lo`` up and makes its
segments realistic (MTU 1500, no GSO aggregation, so one TCP segment is one packet as on
a real link). Inside it the lab starts child processes (``ip netns exec NS argv...``),
sets per-namespace sysctls and loads nftables rules. Leaving it - normally, by exception,
or by SIGINT/SIGTERM while :func:`signals_raise` is active - kills every child it started
(by process-group id, which is the child's PID), and deletes the namespace; deleting the
namespace also drops its nftables tables and sysctls, which live only inside it.

Only loopback exists in the namespace: there is no route to any other address, so lab
traffic cannot leave it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from dissect.errors import DissectError, ExitCode, PrivilegeError

NETNS_DIR = Path("/var/run/netns")
NAME_PREFIX = "dlab-"

# Linux capability bits (include/uapi/linux/capability.h).
CAP_NET_ADMIN = 12   # interfaces, nftables, sysctls under net/
CAP_SYS_ADMIN = 21   # `ip netns add/exec` mount and setns

# Named limits.
CHILD_TERM_GRACE_S = 3.0   # SIGTERM -> SIGKILL: our servers stop in well under a second
IP_COMMAND_TIMEOUT_S = 20.0  # one `ip`/`nft`/`sysctl` call; they finish in milliseconds


class LabError(DissectError):
    """The lab could not set up or run a scenario (a tool failed, a child died)."""

    exit_code = ExitCode.UNAVAILABLE


class LabInterrupted(LabError):
    """SIGINT/SIGTERM arrived while a lab run was active (cleanup still ran)."""


def _effective_caps() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def missing_privileges() -> list[str]:
    """Names of what the lab needs and this process lacks (empty when all is there)."""
    caps = _effective_caps()
    missing = []
    if not caps >> CAP_SYS_ADMIN & 1:
        missing.append("CAP_SYS_ADMIN (to create and enter network namespaces)")
    if not caps >> CAP_NET_ADMIN & 1:
        missing.append("CAP_NET_ADMIN (to configure lo, nftables and sysctls in the namespace)")
    return missing


def require_privileges() -> None:
    """Raise :class:`PrivilegeError` saying what is missing and how to get it."""
    missing = missing_privileges()
    if missing:
        who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
        raise PrivilegeError(
            f"the loopback lab needs {' and '.join(missing)}; this process runs as {who} "
            "without them. Run it as root (e.g. `sudo dissect lab ...`), or in a container "
            "started with --cap-add NET_ADMIN --cap-add SYS_ADMIN", protocol="lab")


def require_tool(name: str) -> str:
    sbin = Path("/usr/sbin") / name
    path = shutil.which(name) or (str(sbin) if sbin.exists() else None)
    if not path:
        raise LabError(f"the lab needs the `{name}` program and it is not installed "
                       f"(Debian/Ubuntu: apt-get install {_PACKAGE_OF.get(name, name)})",
                       protocol="lab")
    return path


_PACKAGE_OF = {"ip": "iproute2", "nft": "nftables", "tcpdump": "tcpdump"}


def _run(argv: list[str], *, input_text: str | None = None) -> str:
    try:
        proc = subprocess.run(argv, input=input_text, capture_output=True, text=True,
                              timeout=IP_COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(argv)}` did not finish in {IP_COMMAND_TIMEOUT_S:.0f} s",
                       protocol="lab") from exc
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip()
        if "Operation not permitted" in err or "Permission denied" in err:
            raise PrivilegeError(f"`{' '.join(argv)}` was refused: {err}. Run the lab as root "
                                 "(CAP_SYS_ADMIN and CAP_NET_ADMIN)", protocol="lab")
        raise LabError(f"`{' '.join(argv)}` failed ({proc.returncode}): {err}", protocol="lab")
    return proc.stdout


# Every live namespace of this process, so an atexit hook can remove what an abrupt
# exit (sys.exit from a signal handler elsewhere, an uncaught error) left behind.
_LIVE: set["Namespace"] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _cleanup_live() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for ns in live:
        ns.close()


class Namespace:
    """A private network namespace with only ``lo`` in it (see module doc)."""

    def __init__(self, *, mtu: int = 1500, name: str | None = None):
        self.name = name or f"{NAME_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self.mtu = mtu
        self.children: list[subprocess.Popen] = []
        self.created = False
        self.sysctls: dict[str, str] = {}
        self._ip = "ip"

    # -- lifecycle -------------------------------------------------------------------
    def open(self) -> "Namespace":
        require_privileges()
        self._ip = require_tool("ip")
        _run([self._ip, "netns", "add", self.name])
        self.created = True
        with _LIVE_LOCK:
            _LIVE.add(self)
        try:
            self.exec_check(["ip", "link", "set", "lo", "up"])
            # One segment per packet, as on a real Ethernet link: no 64 KB GSO super-packets.
            self.exec_check(["ip", "link", "set", "lo", "mtu", str(self.mtu),
                             "gso_max_size", str(self.mtu), "gso_max_segs", "1"])
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Kill our children (by PID/process group) and delete the namespace. Idempotent."""
        for child in reversed(self.children):
            kill_child(child)
        self.children.clear()
        if self.created:
            # Any process still inside (not ours, or escaped its group) would keep the
            # namespace alive after `ip netns del`; kill those by PID too.
            for pid in self.pids_inside():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(LabError, PrivilegeError):
                _run([self._ip, "netns", "del", self.name])
            self.created = False
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def __enter__(self) -> "Namespace":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- running things inside -------------------------------------------------------
    def argv(self, argv: list[str]) -> list[str]:
        return [self._ip, "netns", "exec", self.name, *argv]

    def exec_check(self, argv: list[str], *, input_text: str | None = None) -> str:
        """Run a short command inside the namespace; raise LabError if it fails."""
        return _run(self.argv(argv), input_text=input_text)

    def spawn(self, argv: list[str], *, env: dict | None = None, cwd: str | None = None,
              stdout=subprocess.PIPE, stderr=subprocess.PIPE) -> subprocess.Popen:
        """Start a long-running child inside the namespace, in its own process group.

        `ip netns exec` execs the command in place, so the child's PID is the program's.
        """
        proc = subprocess.Popen(self.argv(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=stdout, stderr=stderr, start_new_session=True)
        self.children.append(proc)
        return proc

    def python_argv(self, module: str, *args: str) -> list[str]:
        return [sys.executable, "-m", module, *args]

    def run_python(self, code: str, *, timeout: float = IP_COMMAND_TIMEOUT_S,
                   env: dict | None = None) -> str:
        """Run `python -c code` inside the namespace; returns its stdout (LabError if it fails)."""
        proc = self.spawn([sys.executable, "-c", code], env=env)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_child(proc)
            raise LabError(f"python code in {self.name} did not finish in {timeout:.0f} s",
                           protocol="lab") from None
        finally:
            if proc in self.children:
                self.children.remove(proc)
        if proc.returncode != 0:
            raise LabError(f"python code in {self.name} failed ({proc.returncode}): "
                           f"{err.decode(errors='replace')[-1500:]}", protocol="lab")
        return out.decode(errors="replace")

    def pids_inside(self) -> list[int]:
        if not self.created:
            return []
        try:
            out = subprocess.run([self._ip, "netns", "pids", self.name], capture_output=True,
                                 text=True, timeout=IP_COMMAND_TIMEOUT_S).stdout
        except (OSError, subprocess.TimeoutExpired):
            return []
        return [int(tok) for tok in out.split() if tok.isdigit()]

    # -- configuration ---------------------------------------------------------------
    def sysctl(self, key: str, value: int | str) -> None:
        """Set a per-namespace sysctl (e.g. net.ipv4.tcp_syn_linear_timeouts)."""
        self.exec_check(["sysctl", "-q", "-w", f"{key}={value}"])
        self.sysctls[key] = str(value)

    def read_sysctl(self, key: str) -> str:
        return self.exec_check(["sysctl", "-n", key]).strip()

    def nft(self, ruleset: str) -> None:
        """Load an nftables ruleset (nft -f syntax) inside the namespace."""
        require_tool("nft")
        self.exec_check(["nft", "-f", "-"], input_text=ruleset)

    def nft_list(self) -> str:
        return self.exec_check(["nft", "list", "ruleset"])


def kill_child(proc: subprocess.Popen, *, grace: float = CHILD_TERM_GRACE_S,
               sig: int = signal.SIGTERM) -> int | None:
    """Stop one child and its process group: `sig`, wait `grace`, then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
    else:
        # The leader exited; reap any straggler still in its group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    return proc.returncode


@contextlib.contextmanager
def signals_raise():
    """While active, SIGINT/SIGTERM raise LabInterrupted so `finally` blocks clean up.

    Only the main thread can install handlers; elsewhere this is a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise LabInterrupted(f"interrupted by {signal.Signals(signum).name}; lab cleaned up",
                             protocol="lab")

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, prev in old.items():
            signal.signal(sig, prev)


def list_lab_namespaces() -> list[str]:
    """Names of lab namespaces that exist now (any process's)."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(NAME_PREFIX))


def remove_stale_namespaces() -> list[str]:
    """Delete lab namespaces whose creating process is gone; returns their names."""
    removed = []
    for name in list_lab_namespaces():
        try:
            pid = int(name[len(NAME_PREFIX):].split("-")[0])
        except ValueError:
            continue
        if pid == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        ns = Namespace(name=name)
        ns.created = True
        ns._ip = shutil.which("ip") or "/usr/sbin/ip"
        ns.close()
        removed.append(name)
    return removed


def wait_for_line(stream, marker: str, timeout: float, proc: subprocess.Popen | None = None) -> str:
    """Read lines from a child's pipe until one contains `marker`; returns that line.

    Uses a helper thread so a silent child cannot block us past `timeout`.
    """
    found: list[str] = []
    seen: list[str] = []
    done = threading.Event()

    def reader():
        try:
            for raw in stream:
                line = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
                seen.append(line.rstrip("\n"))
                if marker in line:
                    found.append(line.rstrip("\n"))
                    break
        except (OSError, ValueError):
            pass
        finally:
            done.set()

    threading.Thread(target=reader, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not done.wait(0.02):
        if time.monotonic() > deadline:
            break
    if found:
        return found[0]
    detail = "; ".join(seen[-5:])
    if proc is not None and proc.poll() is not None:
        err = ""
        if proc.stderr is not None and proc.stderr is not stream:
            with contextlib.suppress(OSError, ValueError):
                err = proc.stderr.read().decode(errors="replace")[-2000:]
        raise LabError(f"child exited ({proc.returncode}) before saying '{marker}': "
                       f"{detail} {err}".strip(), protocol="lab")
    raise LabError(f"no '{marker}' within {timeout:.0f} s (last output: {detail or 'none'})",
                   protocol="lab")
