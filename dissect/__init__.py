"""dissect: a packet-level protocol dissector that says what happened at every OSI layer."""

__version__ = "0.1.0"

# compiled copies of the per-packet modules, when built and matching their sources
from dissect import speedups as _speedups  # noqa: E402

_speedups.install()
