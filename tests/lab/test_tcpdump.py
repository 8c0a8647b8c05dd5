"""tcpdump's statistics, the completeness verdict and the drain wait (no root needed)."""

from __future__ import annotations

import threading
import time

from dissect.lab import tcpdump

CLOSING = "2 packets captured\n4 packets received by filter\n0 packets dropped by kernel\n"


def test_parse_stats_reads_the_closing_lines():
    assert tcpdump.parse_stats(CLOSING) == {"captured": 2, "received_by_filter": 4,
                                            "dropped_by_kernel": 0}
    assert tcpdump.parse_stats("1 packet captured\n") == {"captured": 1}
    assert tcpdump.parse_stats("tcpdump: no such device\n") == {}


def test_incomplete_names_each_kind_of_drop():
    # on lo "received by filter" is twice "captured": that is not a loss
    assert tcpdump.incomplete(tcpdump.parse_stats(CLOSING)) == ""
    assert tcpdump.incomplete({"dropped_by_kernel": 3}) == "3 packets dropped by the kernel"
    assert tcpdump.incomplete({"dropped_by_kernel": 0, "backlog_dropped": 7}) == \
        "7 packets dropped by a receive backlog"
    both = tcpdump.incomplete({"dropped_by_kernel": 1, "backlog_dropped": 2})
    assert "1 packets dropped by the kernel" in both and "2 packets dropped by a" in both


def test_backlog_drops_sums_softnet_stat(tmp_path, monkeypatch):
    fake = tmp_path / "softnet_stat"
    fake.write_text("0000aaaa 00000010 00000000\n0000bbbb 0000000f 00000001\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: real_open(
        fake if p == "/proc/net/softnet_stat" else p, *a, **k))
    assert tcpdump.backlog_drops() == 0x10 + 0x0F
    fake.write_text("garbage\n")
    assert tcpdump.backlog_drops() == 0


def test_wait_drained_waits_for_the_file_to_stop_growing(tmp_path):
    path = tmp_path / "growing.pcap"
    path.write_bytes(b"")
    stop = time.monotonic() + 0.6

    def grow():
        while time.monotonic() < stop:
            with open(path, "ab") as f:
                f.write(b"x")
            time.sleep(0.02)

    writer = threading.Thread(target=grow)
    writer.start()
    t0 = time.monotonic()
    tcpdump.wait_drained(path, quiet_s=0.2, timeout_s=5)
    waited = time.monotonic() - t0
    writer.join()
    assert waited >= 0.6 + 0.2 - 0.05        # the growth, then the quiet period
    size = path.stat().st_size
    time.sleep(0.1)
    assert path.stat().st_size == size


def test_wait_drained_gives_up_at_the_timeout(tmp_path):
    t0 = time.monotonic()
    tcpdump.wait_drained(tmp_path / "never-written.pcap", quiet_s=10, timeout_s=0.3)
    assert 0.3 <= time.monotonic() - t0 < 2
