"""Recording the namespace's loopback with tcpdump.

tcpdump runs inside the namespace on ``lo`` with ``--immediate-mode`` (deliver each
packet at once), a 16 MB buffer (``-B 16384``; smaller buffers drop packets in bursts
on loopback) and ``-U`` (flush the file per packet), full snap length, and ``-Z root`` so
it keeps the rights to write into the lab's root-owned work directory. Stopping sends
SIGINT, after which tcpdump flushes and prints its packet statistics, which are parsed
into the ground truth (``dropped by kernel`` must be 0 for a complete capture).
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
from pathlib import Path

from dissect.lab.netns import LabError, Namespace, kill_child, require_tool, wait_for_line

TCPDUMP_START_TIMEOUT_S = 10.0  # it says "listening on" within milliseconds
TCPDUMP_STOP_TIMEOUT_S = 10.0   # flushing a small capture takes milliseconds
TCPDUMP_BUFFER_KIB = 16384      # below a few MB tcpdump drops packets on loopback bursts

_STAT = re.compile(r"(\d+) packets? (captured|received by filter|dropped by kernel)")


class Tcpdump:
    def __init__(self, ns: Namespace, path: str | Path, iface: str = "lo"):
        self.ns = ns
        self.path = Path(path)
        self.iface = iface
        self.proc: subprocess.Popen | None = None
        self.stats: dict[str, int] = {}
        self.argv = ["tcpdump", "-i", iface, "-n", "--immediate-mode", "-B",
                     str(TCPDUMP_BUFFER_KIB), "-U", "-s", "0", "-Z", "root", "-w", str(self.path)]

    def start(self) -> None:
        require_tool("tcpdump")
        self.proc = self.ns.spawn(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_line(self.proc.stderr, "listening on", TCPDUMP_START_TIMEOUT_S, self.proc)

    def stop(self) -> dict[str, int]:
        if self.proc is None:
            return self.stats
        proc, self.proc = self.proc, None
        if proc.poll() is None:
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
        for count, what in _STAT.findall(tail):
            self.stats[what.replace(" ", "_")] = int(count)
        if not self.path.exists():
            raise LabError(f"tcpdump wrote no capture: {tail.strip()}", protocol="lab")
        return self.stats
