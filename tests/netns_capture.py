"""Record real loopback traffic inside a private network namespace (test helper).

The namespace, tcpdump and every process started are removed on every exit path.
Only 127.0.0.1 and ::1 are used.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

from dissect.lab.tcpdump import backlog_drops, incomplete, parse_stats, wait_drained

# a test traffic script gets this long before it is killed
SCRIPT_TIMEOUT_S = 60
# a recording whose tcpdump missed packets is not ground truth: it is made again, this
# many times in all, before record() gives up
ATTEMPTS = 3


class IncompleteCapture(RuntimeError):
    pass


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


def record(out_path: str, script: str, *, mtu: int | None = 1500, sysctls=(), nft=(),
           settle: float = 0.3, buffer_kib: int = 16384) -> str:
    """Run ``python -c script`` inside a fresh namespace while tcpdump writes ``out_path``.
    Returns the script's stdout. A recording that may miss packets (tcpdump's "dropped by
    kernel", or a rise of the receive-backlog drop counter: see
    dissect.lab.tcpdump.incomplete) is made again, up to ATTEMPTS times in all;
    IncompleteCapture names the last reason. ``buffer_kib``: tcpdump's ring (``-B``); a
    burst of bulk transfers needs more than the default."""
    why = ""
    for _attempt in range(ATTEMPTS):
        out, stats = _record_once(out_path, script, mtu=mtu, sysctls=sysctls, nft=nft,
                                  settle=settle, buffer_kib=buffer_kib)
        why = incomplete(stats)
        if not why:
            return out
    raise IncompleteCapture(f"tcpdump missed packets in {ATTEMPTS} recordings: {why}")


def _record_once(out_path, script, *, mtu, sysctls, nft, settle, buffer_kib=16384):
    ns = "dt" + uuid.uuid4().hex[:10]
    backlog = backlog_drops()
    sh("ip", "netns", "add", ns)
    tcpdump = None
    try:
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        if mtu:
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "mtu", str(mtu),
               "gso_max_size", str(mtu), "gso_max_segs", "1", check=False)
        for k, v in sysctls:
            sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{k}={v}")
        for rule in nft:
            sh("ip", "netns", "exec", ns, "nft", *rule.split())
        tcpdump = subprocess.Popen(
            ["ip", "netns", "exec", ns, "tcpdump", "-i", "lo", "-w", out_path, "-U",
             "--immediate-mode", "-B", str(buffer_kib), "-s", "0", "-n"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # wait until tcpdump is listening
        deadline = time.time() + 10
        line = b""
        while time.time() < deadline:
            line = tcpdump.stderr.readline()
            if b"listening" in line or not line:
                break
        time.sleep(settle)
        r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", script],
                           capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S)
        if r.returncode != 0:
            raise RuntimeError(f"traffic script failed: {r.stderr[-2000:]}")
        time.sleep(settle)
        wait_drained(out_path)
        tcpdump.send_signal(signal.SIGINT)
        tcpdump.wait(10)
        stats = parse_stats(tcpdump.stderr.read().decode(errors="replace"))
        stats["backlog_dropped"] = backlog_drops() - backlog
        return r.stdout, stats
    finally:
        if tcpdump is not None and tcpdump.poll() is None:
            tcpdump.send_signal(signal.SIGINT)
            try:
                tcpdump.wait(10)
            except subprocess.TimeoutExpired:
                tcpdump.kill()
                tcpdump.wait()
        # any process still in the namespace is ours: kill it by PID
        pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        sh("ip", "netns", "del", ns, check=False)


MIXED_TRAFFIC = r'''
import socket, threading, http.server, urllib.request, subprocess
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = b"hello from dissect " * 50
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    class S(http.server.ThreadingHTTPServer):
        address_family = fam
    srv = S((host, 0), H)
    port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    u = f"http://{host}:{port}/x" if fam == socket.AF_INET else f"http://[{host}]:{port}/x"
    for _ in range(3):
        urllib.request.urlopen(u, timeout=5).read()
    srv.shutdown(); srv.server_close()
    # UDP datagrams to a real listener
    rx = socket.socket(fam, socket.SOCK_DGRAM); rx.bind((host, 0))
    tx = socket.socket(fam, socket.SOCK_DGRAM)
    for i in range(3):
        tx.sendto(b"datagram %d" % i, rx.getsockname()[:2]); rx.recvfrom(100)
    rx.close(); tx.close()
    # a refused connection (RST)
    c = socket.socket(fam); p = socket.socket(fam); p.bind((host, 0)); port = p.getsockname()[1]; p.close()
    try: c.connect((host, port))
    except OSError: pass
    c.close()
# ICMP echo (the kernel answers) through a raw socket
import struct, time
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return ~s & 0xFFFF
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
for seq in (1, 2):
    hdr = struct.pack("!BBHHH", 8, 0, 0, 0x4242, seq) + b"dissect-ping"
    hdr = hdr[:2] + struct.pack("!H", csum(hdr)) + hdr[4:]
    r.sendto(hdr, ("127.0.0.1", 0)); r.settimeout(2); r.recvfrom(200); time.sleep(0.05)
r.close()
'''
