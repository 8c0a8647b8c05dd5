"""Terminal rendering helpers: escaping of capture-controlled text, OSI colours, tables."""

from __future__ import annotations

import os
import re
import sys

from tabulate import tabulate

from dissect.osi import Osi

_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# colour per OSI layer (ANSI SGR), physical at the bottom, application at the top
LAYER_COLOURS = {1: "90", 2: "34", 3: "36", 4: "32", 5: "33", 6: "35", 7: "1;31"}


def safe(value) -> str:
    """Text from a capture, made harmless for a terminal: control characters (escape
    sequences included) are shown as \\xNN instead of being sent to the terminal."""
    s = value if isinstance(value, str) else str(value)
    return _CTRL.sub(lambda m: f"\\x{ord(m.group()):02x}", s)


def use_colour(stream=None, force: bool | None = None) -> bool:
    if force is not None:
        return force
    if os.environ.get("NO_COLOR"):
        return False
    stream = stream or sys.stdout
    return hasattr(stream, "isatty") and stream.isatty()


def paint(text: str, osi: int, colour: bool) -> str:
    if not colour:
        return text
    return f"\x1b[{LAYER_COLOURS.get(osi, '0')}m{text}\x1b[0m"


def layer_label(osi: int) -> str:
    return f"L{osi} {Osi(osi).label}"


def table(rows, headers, fmt: str = "simple") -> str:
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
