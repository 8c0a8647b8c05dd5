"""Errors dissect raises, in three tiers, each carrying the exit code the CLI maps it to.

Tiers (after h11/dpkt/zeek):

* ``NeedMoreData`` - not an error for the user: a stream parser needs more bytes.
* ``MalformedError`` - bytes that cannot be parsed; the caller keeps the raw bytes
  as a raw layer and records an anomaly, then goes on.
* ``ProtocolViolation`` - parsed, but breaks the protocol's rules.

Errors that stop reading a capture (``CaptureError`` and its subclasses) name the
file, the frame number and the reason.
"""

from __future__ import annotations


class ExitCode:
    OK = 0
    # 1 is click's own usage-error code and Python's generic failure; we avoid it.
    USAGE = 2          # bad command line (click)
    NOT_A_CAPTURE = 3  # the file is not a capture format dissect reads
    DAMAGED = 4        # the capture is truncated or corrupt part-way; frames before it were output
    UNSUPPORTED = 5    # a format or link type dissect does not read
    IO = 6             # the file cannot be opened or read
    NEED_PRIVILEGE = 7 # crafting/capture/lab needs root or CAP_NET_RAW/CAP_NET_ADMIN
    REFUSED = 8        # refused for safety (non-loopback target, output exists without --force)
    UNAVAILABLE = 69   # a crafted exchange or lab run failed: peer refused/silent, tool failed (EX_UNAVAILABLE)
    INTERNAL = 70      # a bug in dissect (EX_SOFTWARE); reported without a traceback


class DissectError(Exception):
    """Base of every error dissect raises on purpose."""

    exit_code = ExitCode.INTERNAL

    def __init__(self, reason: str, *, protocol: str | None = None, offset: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.protocol = protocol
        self.offset = offset

    def __str__(self) -> str:
        where = []
        if self.protocol:
            where.append(self.protocol)
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        return (", ".join(where) + ": " if where else "") + self.reason


class NeedMoreData(DissectError):
    """A stream parser needs more bytes before it can emit anything."""


class MalformedError(DissectError):
    """Bytes that cannot be parsed as the protocol claims (kept raw, with an anomaly)."""


class ProtocolViolation(DissectError):
    """Parsed, but the content breaks the protocol's rules."""


class CaptureError(DissectError):
    """Reading a capture file failed; names the file and the frame."""

    exit_code = ExitCode.DAMAGED

    def __init__(self, reason: str, *, path: str | None = None, frame: int | None = None,
                 offset: int | None = None):
        super().__init__(reason, offset=offset)
        self.path = path
        self.frame = frame

    def __str__(self) -> str:
        parts = [self.path or "<capture>"]
        if self.frame is not None:
            parts.append(f"frame {self.frame}")
        if self.offset is not None:
            parts.append(f"byte offset {self.offset}")
        return ": ".join([", ".join(parts), self.reason])


class NotACaptureError(CaptureError):
    exit_code = ExitCode.NOT_A_CAPTURE


class UnsupportedError(CaptureError):
    exit_code = ExitCode.UNSUPPORTED


class DamagedCaptureError(CaptureError):
    exit_code = ExitCode.DAMAGED


class CaptureIOError(CaptureError):
    exit_code = ExitCode.IO


class PrivilegeError(DissectError):
    exit_code = ExitCode.NEED_PRIVILEGE


class RefusedError(DissectError):
    exit_code = ExitCode.REFUSED


class UnavailableError(DissectError):
    """The network exchange or lab run could not be completed (not a bug in dissect)."""
    exit_code = ExitCode.UNAVAILABLE
