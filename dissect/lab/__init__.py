"""The loopback lab: real servers and clients in a private network namespace, recorded.

``run_scenario(name, out)`` creates a namespace with only ``lo`` (MTU 1500, no GSO), starts
tcpdump, a real server and a real client as child processes inside it, optionally drops a
seeded share of packets with nftables, and writes the capture plus a JSON ground truth of
what the client really did (see :mod:`dissect.lab.runner`). Scenarios are the table in
:mod:`dissect.lab.scenarios`. Needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN) and tcpdump.
"""

from dissect.lab.runner import LabResult, run_scenario
from dissect.lab.scenarios import SCENARIOS, Scenario

__all__ = ["LabResult", "SCENARIOS", "Scenario", "run_scenario"]
