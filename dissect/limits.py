"""Every resource limit users may need to change, by name, with where it lives.

Each limit is a named constant in the module that enforces it, with a comment there saying
why that value; this table only lets ``dissect --limit NAME=VALUE`` (and tests) override it
for one run. ``dissect limits`` lists them with their current values.
"""

from __future__ import annotations

import importlib

from dissect.errors import DissectError, ExitCode


class LimitError(DissectError):
    exit_code = ExitCode.USAGE


# name -> (description, [(module, attribute), ...])
LIMITS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "max-caplen": ("largest captured record accepted, bytes",
                   [("dissect.io.capture", "MAX_CAPLEN")]),
    "max-block": ("largest pcapng block accepted, bytes",
                  [("dissect.io.capture", "MAX_BLOCK_LEN")]),
    "gzip-ratio": ("largest gzip expansion ratio before a file is called a bomb",
                   [("dissect.io.capture", "MAX_GZIP_RATIO")]),
    "ipv6-ext-headers": ("IPv6 extension headers followed in one packet",
                         [("dissect.columns.decode", "MAX_IPV6_EXT_HEADERS")]),
    "encap-depth": ("tunnels/tags unwrapped in one frame",
                    [("dissect.columns.decode", "MAX_ENCAP_DEPTH"),
                     ("dissect.protocols.frame", "MAX_DEPTH")]),
    "reassembly-ooo-bytes": ("out-of-order bytes held per TCP stream direction",
                             [("dissect.analysis.reassembly", "MAX_OOO_BYTES")]),
    "reassembly-keep-bytes": ("delivered bytes kept per direction to check retransmissions",
                              [("dissect.analysis.reassembly", "KEEP_DELIVERED")]),
    "tcp-unacked-segments": ("unacknowledged segments remembered per direction",
                             [("dissect.analysis.tcp", "TCP_MAX_UNACKED_SEGMENTS")]),
    "conversations": ("address-pair cells kept in the capture summary",
                      [("dissect.analysis.summary", "MAX_CONVERSATIONS")]),
    "udp-idle-timeout": ("seconds of silence that end a UDP flow",
                         [("dissect.analysis.flows", "UDP_IDLE_TIMEOUT_S")]),
    "dns-labels": ("labels in one DNS name", [("dissect.analysis.app.dns", "MAX_LABELS")]),
    "dns-pointer-hops": ("compression pointers followed in one DNS name",
                         [("dissect.analysis.app.dns", "MAX_POINTER_HOPS")]),
    "dns-records": ("resource records decoded per DNS message",
                    [("dissect.analysis.app.dns", "MAX_RECORDS")]),
    "smtp-line": ("longest SMTP command/reply line, bytes",
                  [("dissect.analysis.app.smtp", "MAX_LINE")]),
    "ftp-line": ("longest FTP control line, bytes", [("dissect.analysis.app.ftp", "MAX_LINE")]),
    "imap-literal": ("largest IMAP literal believed, bytes",
                     [("dissect.analysis.app.imap", "MAX_LITERAL")]),
    "http-start-line": ("longest HTTP request/status line, bytes",
                        [("dissect.analysis.app.http", "MAX_START_LINE")]),
    "http-header-block": ("largest HTTP header block, bytes",
                          [("dissect.analysis.app.http", "MAX_HEADER_BLOCK")]),
    "http-headers": ("HTTP header fields per message", [("dissect.analysis.app.http", "MAX_HEADERS")]),
    "http-chunk-digits": ("hex digits of an HTTP chunk size",
                          [("dissect.analysis.app.http", "MAX_CHUNK_SIZE_DIGITS")]),
    "websocket-frame-payload": ("largest WebSocket frame payload believed, bytes",
                                [("dissect.analysis.app.websocket", "MAX_FRAME_PAYLOAD")]),
    "tls-handshake": ("largest TLS handshake message reassembled, bytes",
                      [("dissect.analysis.app.tls", "MAX_HANDSHAKE")]),
    "http2-header-block": ("largest HTTP/2 header block, bytes",
                           [("dissect.analysis.app.http2", "MAX_HEADER_BLOCK")]),
    "grpc-messages": ("gRPC messages kept per call", [("dissect.analysis.app.http2", "MAX_GRPC_MESSAGES")]),
    "rtp-streams": ("RTP SSRCs tracked per flow", [("dissect.analysis.app.rtc", "MAX_SSRCS")]),
}


def _targets(name: str):
    if name not in LIMITS:
        raise LimitError(f"unknown limit {name!r} (see 'dissect limits')")
    out = []
    for mod, attr in LIMITS[name][1]:
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        if hasattr(m, attr):
            out.append((m, attr))
    return out


def current() -> dict[str, object]:
    vals = {}
    for name in LIMITS:
        t = _targets(name)
        vals[name] = getattr(t[0][0], t[0][1]) if t else None
    return vals


def set_limit(name: str, value: str) -> None:
    targets = _targets(name)
    if not targets:
        raise LimitError(f"limit {name!r} is not available in this installation")
    old = getattr(*targets[0])
    try:
        v = type(old)(value)
    except (TypeError, ValueError):
        raise LimitError(f"limit {name}: {value!r} is not a {type(old).__name__}") from None
    if v <= 0:
        raise LimitError(f"limit {name} must be positive")
    for m, attr in targets:
        setattr(m, attr, v)


def apply(specs) -> None:
    """``specs``: iterable of "NAME=VALUE"."""
    for spec in specs or ():
        name, sep, value = spec.partition("=")
        if not sep:
            raise LimitError(f"--limit wants NAME=VALUE, got {spec!r}")
        set_limit(name.strip(), value.strip())
