"""Application-layer fields for the display path.

Each application module in :mod:`dissect.analysis.app` may offer
``dissect_payload(data, offset) -> list[Layer]`` for a message that starts in one
segment/datagram. Which module to try is decided by content probes (the module's parser
``probe``), with ports only ordering the candidates.
"""

from __future__ import annotations

import importlib

from dissect.protocols.base import Layer

# module name -> hint ports (order candidates; content decides)
MODULES = {
    "http": (80, 8080, 8000, 3128), "tls": (443, 8443, 993, 995, 465), "http2": (80, 8080, 50051),
    "websocket": (), "ftp": (21,), "smtp": (25, 587, 2525), "imap": (143,), "pop3": (110,),
    "dns": (53, 5353), "rtc": (3478, 19302), "quic": (443,),
}
STREAM_ONLY = {"http", "tls", "http2", "websocket", "ftp", "smtp", "imap", "pop3"}
DATAGRAM_ONLY = {"rtc", "quic"}

_loaded: dict[str, object] = {}


def _module(name: str):
    if name not in _loaded:
        try:
            _loaded[name] = importlib.import_module(f"dissect.analysis.app.{name}")
        except ImportError:
            _loaded[name] = None
    return _loaded[name]


def application_layers(payload: bytes, offset: int, transport: str, sport: int,
                       dport: int) -> list[Layer]:
    names = [n for n in MODULES
             if not (transport == "udp" and n in STREAM_ONLY)
             and not (transport == "tcp" and n in DATAGRAM_ONLY)]
    names.sort(key=lambda n: 0 if (sport in MODULES[n] or dport in MODULES[n]) else 1)
    for name in names:
        mod = _module(name)
        fn = getattr(mod, "dissect_payload", None) if mod else None
        if fn is None:
            continue
        try:
            layers = fn(payload, offset)
        except Exception:   # a display dissector must never take the frame down
            layers = None
        if layers:
            for lay in layers:   # field names relative to their layer, as in the lower layers
                pre = lay.protocol + "."
                for f in lay.fields:
                    if f.name.startswith(pre):
                        f.name = f.name[len(pre):]
            return layers
    return []
