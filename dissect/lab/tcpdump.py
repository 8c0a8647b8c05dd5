"""Recording the namespace's loopback with tcpdump.

tcpdump runs inside the namespace on ``lo`` with ``--immediate-mode`` (deliver each
packet at once), a 16 MB buffer (``-B 16384``; smaller buffers drop packets in bursts
on loopback) and ``-U`` (flush the file per packet), full snap length, and ``-Z root`` so
it keeps the rights to write into the lab's root-owned work directory. Stopping waits until
the file has stopped growing (tcpdump may lag on a loaded machine), then sends
SIGINT, after which tcpdump flushes and prints its packet statistics, which are parsed
into the ground truth (``dropped by kernel`` must be 0 for a complete capture; so should
``backlog_dropped``, the rise of the kernel's receive-backlog drop counter meanwhile).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from dissect.lab.netns import LabError, Namespace, kill_child, require_tool, wait_for_line

TCPDUMP_START_TIMEOUT_S = 10.0  # it says "listening on" within milliseconds
TCPDUMP_STOP_TIMEOUT_S = 10.0   # flushing a small capture takes milliseconds
TCPDUMP_BUFFER_KIB = 16384      # below a few MB tcpdump drops packets on loopback bursts
# before SIGINT the capture file must stop growing for this long: on a loaded machine
# tcpdump can be seconds behind the traffic, and what is still in its kernel buffer when it
# stops is lost
DRAIN_QUIET_S = 0.5
DRAIN_TIMEOUT_S = 30.0

_STAT = re.compile(r"(\d+) packets? (captured|received by filter|dropped by kernel)")


def parse_stats(text: str) -> dict[str, int]:
    """tcpdump's closing statistics as ``{"captured": n, "received_by_filter": n,
    "dropped_by_kernel": n}`` (the keys it printed)."""
    return {what.replace(" ", "_"): int(count) for count, what in _STAT.findall(text)}


def backlog_drops() -> int:
    """Packets the kernel's per-CPU receive backlogs have dropped since boot (the second
    column of /proc/net/softnet_stat, summed over CPUs; 0 where it cannot be read).

    On ``lo`` the copy tcpdump keeps is the incoming one, taken after the backlog: a packet
    dropped there (a starved softirq on a loaded machine) was sent, is missing from the
    capture, and its retransmission looks like a first transmission. The counter is global,
    so a rise during a recording only says the capture may be incomplete."""
    try:
        with open("/proc/net/softnet_stat") as f:
            return sum(int(line.split()[1], 16) for line in f if line.strip())
    except (OSError, IndexError, ValueError):
        return 0


def incomplete(stats: dict[str, int]) -> str:
    """Why a capture with these statistics may miss packets, or "" when it is complete.
    Counted are tcpdump's "dropped by kernel" and ``backlog_dropped`` (the rise of
    :func:`backlog_drops` while recording). On ``lo`` "received by filter" counts each
    packet twice (the outgoing and incoming copies, of which libpcap keeps one), so it
    cannot be compared with "captured"; packets still buffered at SIGINT are avoided by
    :func:`wait_drained` instead."""
    reasons = []
    if stats.get("dropped_by_kernel", 0):
        reasons.append(f"{stats['dropped_by_kernel']} packets dropped by the kernel")
    if stats.get("backlog_dropped", 0):
        reasons.append(f"{stats['backlog_dropped']} packets dropped by a receive backlog")
    return ", ".join(reasons)


def wait_drained(path: str | Path, quiet_s: float = DRAIN_QUIET_S,
                 timeout_s: float = DRAIN_TIMEOUT_S) -> None:
    """Return once the capture file has not grown for ``quiet_s`` (tcpdump -U writes each
    packet as it takes it from the kernel), or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        try:
            size = os.path.getsize(path)
        except OSError:
            size = -1
        now = time.monotonic()
        if size != last:
            last, since = size, now
        elif now - since >= quiet_s:
            return
        time.sleep(0.05)


class Tcpdump:
    def __init__(self, ns: Namespace, path: str | Path, iface: str = "lo"):
        self.ns = ns
        self.path = Path(path)
        self.iface = iface
        self.proc: subprocess.Popen | None = None
        self.stats: dict[str, int] = {}
        self._backlog = 0
        self.argv = ["tcpdump", "-i", iface, "-n", "--immediate-mode", "-B",
                     str(TCPDUMP_BUFFER_KIB), "-U", "-s", "0", "-Z", "root", "-w", str(self.path)]

    def start(self) -> None:
        require_tool("tcpdump")
        self._backlog = backlog_drops()
        self.proc = self.ns.spawn(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_line(self.proc.stderr, "listening on", TCPDUMP_START_TIMEOUT_S, self.proc)

    def stop(self) -> dict[str, int]:
        if self.proc is None:
            return self.stats
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            wait_drained(self.path)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=TCPDUMP_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            kill_child(proc)
            raise LabError("tcpdump did not stop on SIGINT", protocol="lab") from None
        tail = ""
        with contextlib.suppress(OSError, ValueError):
            tail = proc.stderr.read().decode(errors="replace")
        kill_child(proc)  # closes pipes; the process is already gone
        self.stats.update(parse_stats(tail))
        self.stats["backlog_dropped"] = backlog_drops() - self._backlog
        if not self.path.exists():
            raise LabError(f"tcpdump wrote no capture: {tail.strip()}", protocol="lab")
        return self.stats
