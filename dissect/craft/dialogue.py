"""What each side says in a crafted exchange: the client's request and the server's
answers for http, ftp, smtp, and raw/echo payloads. Pure functions, bytes in and bytes
out; the offline builder (both sides) and the live listener (server side) share them, so
an offline capture and a live one carry the same conversation.

The answers are deliberately small but real protocol: status lines and headers that
tshark's HTTP/FTP/SMTP dissectors parse as such.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import formatdate

APPS = ("http", "ftp", "smtp", "raw")

# A request line or command longer than this is refused: it would not fit one segment
# of the 1500-byte loopback MTU the crafted exchanges use, and nothing here segments.
MAX_REQUEST_BYTES = 1400
# The listener reads at most this much of one request before answering (no client of
# ours sends more; anything larger is another program talking to the port).
MAX_READ_BYTES = 65536

SERVER_NAME = "dissect-craft"
HTTP_BODY = (b"<!DOCTYPE html>\n<html><head><title>dissect craft</title></head>\n"
             b"<body><p>Hello from the dissect craft listener.</p></body></html>\n")
FTP_BANNER = b"220 dissect craft FTP service ready\r\n"
SMTP_BANNER = b"220 localhost ESMTP dissect craft ready\r\n"

_TOKEN = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_REPLY_END = re.compile(rb"(?:^|\r\n)\d{3} [^\r\n]*\r\n$")


@dataclass(frozen=True)
class Request:
    app: str
    data: bytes            # what the client sends
    first_line: str        # for the ladder


def _line(text: str, app: str) -> bytes:
    if "\r" in text or "\n" in text:
        raise ValueError(f"the {app} command must be one line (no CR/LF): {text!r}")
    data = text.encode("utf-8") + b"\r\n"
    if not text.strip():
        raise ValueError(f"the {app} command is empty")
    return data


def build_request(app: str, text: str | None = None, payload: bytes | None = None,
                  host: str = "127.0.0.1", port: int = 80) -> Request:
    """The client's request. ``text`` is the --http/--ftp/--smtp argument; ``payload``
    the raw bytes for ``raw``. ValueError for anything that cannot be sent as given."""
    if app == "http":
        parts = (text or "GET /").split()
        if len(parts) == 1:
            parts.append("/")
        if len(parts) not in (2, 3) or not _TOKEN.match(parts[0].encode()):
            raise ValueError(f"--http wants 'METHOD TARGET' (e.g. 'GET /'), not {text!r}")
        method, target = parts[0], parts[1]
        version = parts[2] if len(parts) == 3 else "HTTP/1.1"
        if not re.fullmatch(r"HTTP/1\.[01]", version):
            raise ValueError(f"--http version must be HTTP/1.0 or HTTP/1.1, not {version!r}")
        if any(ord(c) < 0x21 or ord(c) > 0x7E for c in target):
            raise ValueError(f"--http target must be printable ASCII without spaces: {target!r}")
        hostport = f"[{host}]" if ":" in host else host
        first = f"{method} {target} {version}"
        data = (f"{first}\r\nHost: {hostport}:{port}\r\nUser-Agent: {SERVER_NAME}\r\n"
                f"Accept: */*\r\n\r\n").encode("ascii")
    elif app in ("ftp", "smtp"):
        data = _line(text or ("USER anonymous" if app == "ftp" else "HELO localhost"), app)
        first = data[:-2].decode("utf-8", "replace")
    elif app == "raw":
        data = payload or b""
        if not data:
            raise ValueError("the raw payload is empty")
        first = f"{len(data)} bytes"
    else:
        raise ValueError(f"unknown application {app!r} (one of {', '.join(APPS)})")
    if len(data) > MAX_REQUEST_BYTES:
        raise ValueError(f"the request is {len(data)} bytes; at most {MAX_REQUEST_BYTES} "
                         "fit one segment")
    return Request(app, data, first)


def banner(app: str) -> bytes | None:
    """What the server says first (ftp and smtp greet; http and raw wait)."""
    return {"ftp": FTP_BANNER, "smtp": SMTP_BANNER}.get(app)


def http_answer(request: bytes, when: float) -> bytes:
    """Status line, headers and body the way Python's http.server sends them."""
    line = request.split(b"\r\n", 1)[0].split()
    method = line[0] if line else b""
    target = line[1] if len(line) > 1 else b""
    if method in (b"GET", b"HEAD") and target in (b"/", b"/index.html"):
        code, reason, body = 200, "OK", HTTP_BODY
    elif method in (b"GET", b"HEAD"):
        code, reason = 404, "Not Found"
        body = b"<!DOCTYPE html>\n<html><body><p>404 Not Found</p></body></html>\n"
    else:
        code, reason = 501, "Not Implemented"
        body = b"<!DOCTYPE html>\n<html><body><p>501 Not Implemented</p></body></html>\n"
    head = (f"HTTP/1.1 {code} {reason}\r\nServer: {SERVER_NAME}\r\n"
            f"Date: {formatdate(when, usegmt=True)}\r\nContent-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("ascii")
    return head + (b"" if method == b"HEAD" else body)


FTP_REPLIES = {
    b"USER": b"331 Please specify the password.\r\n",
    b"PASS": b"230 Login successful.\r\n",
    b"SYST": b"215 UNIX Type: L8\r\n",
    b"PWD": b'257 "/" is the current directory\r\n',
    b"NOOP": b"200 NOOP ok.\r\n",
    b"FEAT": b"211-Features:\r\n PASV\r\n UTF8\r\n211 End\r\n",
    b"TYPE": b"200 Switching to Binary mode.\r\n",
    b"QUIT": b"221 Goodbye.\r\n",
}
SMTP_REPLIES = {
    b"HELO": b"250 localhost\r\n",
    b"EHLO": b"250-localhost\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10240000\r\n",
    b"MAIL": b"250 2.1.0 Ok\r\n",
    b"RCPT": b"250 2.1.5 Ok\r\n",
    b"DATA": b"354 End data with <CR><LF>.<CR><LF>\r\n",
    b"RSET": b"250 2.0.0 Ok\r\n",
    b"NOOP": b"250 2.0.0 Ok\r\n",
    b"QUIT": b"221 2.0.0 Bye\r\n",
}


def command_answer(app: str, line: bytes) -> bytes:
    """The server's reply to one ftp/smtp command line (with or without its CRLF)."""
    verb = line.strip().split(b" ", 1)[0].upper()
    table = FTP_REPLIES if app == "ftp" else SMTP_REPLIES
    if verb in table:
        return table[verb]
    return (b"502 Command not implemented.\r\n" if app == "ftp"
            else b"502 5.5.2 Error: command not recognized\r\n")


def answer(app: str, request: bytes, when: float = 0.0) -> bytes:
    """The server's whole answer to ``request``."""
    if app == "http":
        return http_answer(request, when)
    if app in ("ftp", "smtp"):
        return b"".join(command_answer(app, ln) for ln in request.split(b"\r\n") if ln.strip())
    return request   # raw: the listener echoes


def closes_after(app: str, request: bytes) -> bool:
    """Whether the server closes the connection itself after answering (QUIT)."""
    if app in ("ftp", "smtp"):
        return any(ln.strip().upper().split(b" ", 1)[0] == b"QUIT" for ln in request.split(b"\r\n"))
    return False


def answer_complete(app: str, data: bytes, expected: int = 0, request: bytes = b"") -> bool:
    """Whether ``data`` received from the server is a whole answer (or banner)."""
    if app == "http":
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return False
        if request.startswith(b"HEAD "):
            return True
        m = re.search(rb"\r\ncontent-length:\s*(\d+)", data[:end + 2], re.IGNORECASE)
        if m is None:
            return True
        return len(data) >= end + 4 + int(m.group(1))
    if app in ("ftp", "smtp"):
        return bool(_REPLY_END.search(data))
    return len(data) >= max(expected, 1)
