"""The OSI table: pinned, complete, and the README's copy equal to it."""

from __future__ import annotations

import re
from pathlib import Path

from dissect.osi import PROTOCOL_LAYER, Osi, layer_of

README = Path(__file__).resolve().parents[1] / "README.md"


def test_pinned_choices():
    assert layer_of("frame") == Osi.PHYSICAL
    for p in ("eth", "vlan", "sll", "sll2", "arp", "null"):
        assert layer_of(p) == Osi.DATALINK
    for p in ("ip", "ipv6", "icmp", "icmpv6"):
        assert layer_of(p) == Osi.NETWORK
    assert layer_of("tcp") == layer_of("udp") == Osi.TRANSPORT
    assert layer_of("tls.handshake") == Osi.SESSION
    assert layer_of("tls") == Osi.PRESENTATION
    for p in ("http", "ftp", "smtp", "imap", "pop3", "dns", "websocket"):
        assert layer_of(p) == Osi.APPLICATION
    # sub-protocol names fall back to their base protocol
    assert layer_of("ipv6.ext") == Osi.NETWORK
    assert layer_of("something-unknown") == Osi.APPLICATION


def test_readme_table_equals_the_module():
    text = README.read_text()
    rows = re.findall(r"^\| (\d) \| (\w+) \| (.+) \|$", text, re.M)
    documented = {}
    for num, label, protos in rows:
        assert Osi(int(num)).label == label
        for p in re.findall(r"`([^`]+)`", protos):
            documented[p] = Osi(int(num))
    assert documented == PROTOCOL_LAYER
