"""dissect: a packet-level protocol dissector that says what happened at every OSI layer."""

__version__ = "0.1.0"
