"""Safety checks for sending and capturing, run before any socket is opened.

* Destinations: only loopback (127.0.0.0/8, ::1) unless the user passes
  ``--allow-remote``; anything else is a :class:`~dissect.errors.RefusedError`.
* Privileges: raw sockets need CAP_NET_RAW, nftables and interface settings need
  CAP_NET_ADMIN, creating/entering a network namespace needs CAP_SYS_ADMIN. What is
  missing is named in a :class:`~dissect.errors.PrivilegeError`, with how to get it.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
from pathlib import Path

from dissect.errors import DissectError, ExitCode, PrivilegeError, RefusedError

# Linux capability bits (include/uapi/linux/capability.h).
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_SYS_ADMIN = 21

WHY = {
    CAP_NET_RAW: "CAP_NET_RAW (raw sockets: sending crafted packets, capturing)",
    CAP_NET_ADMIN: "CAP_NET_ADMIN (nftables rules that keep the kernel from resetting "
                   "the crafted connection, interface settings)",
    CAP_SYS_ADMIN: "CAP_SYS_ADMIN (creating and entering the private network namespace)",
}


class CraftError(DissectError):
    """A crafted exchange or capture could not be carried out (refused by the peer, no
    answer, a helper program failed): exit code 69, 'the network did not do what was asked'."""

    exit_code = ExitCode.UNAVAILABLE


def check_destination(dst: str, allow_remote: bool) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The parsed address; RefusedError unless it is loopback or ``allow_remote``.

    Only literal addresses are accepted: a host name would need a DNS lookup (traffic)
    before the check could be made."""
    try:
        addr = ipaddress.ip_address(dst)
    except ValueError:
        raise RefusedError(f"{dst!r} is not an IP address; give a literal address "
                           "(127.0.0.1 or ::1)", protocol="craft") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr4 = addr.ipv4_mapped
        loop = addr4.is_loopback
    else:
        loop = addr.is_loopback
    if not loop and not allow_remote:
        raise RefusedError(f"{dst} is not a loopback address (127.0.0.0/8 or ::1); crafted "
                           "packets go to loopback only unless you pass --allow-remote",
                           protocol="craft")
    return addr


def effective_caps() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def require_caps(needed: tuple[int, ...], what: str, caps: int | None = None) -> None:
    """PrivilegeError naming each missing capability and how to get it.

    Granting file capabilities to the interpreter (setcap) only helps when everything
    happens in this Python process or its Python children (CAP_NET_RAW alone: capture,
    UDP without --listen); ``ip`` and ``nft`` are other programs and would not inherit
    them, so anything needing those is told to run as root."""
    caps = effective_caps() if caps is None else caps
    missing = [c for c in needed if not caps >> c & 1]
    if not missing:
        return
    who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    how = f"Run it as root (`sudo dissect {what} ...`)"
    if tuple(needed) == (CAP_NET_RAW,):
        exe = os.path.realpath(sys.executable)
        how += (f", or grant the capability to the interpreter "
                f"(`sudo setcap cap_net_raw+eip {exe}`)")
    else:
        how += (" - the `ip` and `nft` programs it runs need the privileges too, so setcap "
                "on the interpreter is not enough")
    raise PrivilegeError(
        f"{what} needs {' and '.join(WHY[c] for c in missing)}; this process runs as {who} "
        f"without {'it' if len(missing) == 1 else 'them'}. {how}", protocol="craft")


def require_tool(name: str, package: str) -> str:
    sbin = Path("/usr/sbin") / name
    path = shutil.which(name) or (str(sbin) if sbin.exists() else None)
    if not path:
        raise CraftError(f"this needs the `{name}` program, which is not installed "
                         f"(Debian/Ubuntu: apt-get install {package})", protocol="craft")
    return path
