"""Crafting and live capture (the I/O shell; Scapy lives here and nowhere in the core).

* :mod:`dissect.craft.safety` - loopback-only destinations and privilege checks, raised
  before any socket is opened.
* :mod:`dissect.craft.dialogue` - what client and server say for http/ftp/smtp/raw/echo
  (pure: bytes in, bytes out), shared by the offline builder and the live listener.
* :mod:`dissect.craft.offline` - complete, deterministic exchanges built without sending.
* :mod:`dissect.craft.listener` - the real socket servers ``--listen`` starts.
* :mod:`dissect.craft.tap` - an AF_PACKET tap that sees each loopback packet once.
* :mod:`dissect.craft.worker` - the Scapy client that drives a handshake against the kernel.
* :mod:`dissect.craft.live` - runs listener + worker in a private namespace (or in the
  current one behind a temporary nftables table) and cleans up on every exit path.
* :mod:`dissect.craft.capture` - ``dissect capture``.
"""
