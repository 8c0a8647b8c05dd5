"""http and https scenarios: python's http.server and an http.client client.

The client sends four GETs (one for a missing page, so a 404 is in the capture) and one
form POST on a single HTTP/1.1 keep-alive connection, then closes it. Over TLS it
connects to 127.0.0.1 with SNI ``dissect.test`` and ALPN ``http/1.1`` and verifies the
server's run-time self-signed certificate; the TLS session keys are written to the
ground truth (``tls_keylog``) so Wireshark can decrypt the capture.
"""

from __future__ import annotations

import http.client
import http.server
import json
import socketserver
import ssl
from pathlib import Path

from dissect.lab.certs import make_self_signed

USER_AGENT = "dissect-lab/0.1"
CLIENT_TIMEOUT_S = 10.0  # every exchange is local and answers in milliseconds

PAGES = {
    "/": ("text/html; charset=utf-8",
          b"<!doctype html><title>dissect lab</title><h1>dissect lab</h1>"
          b"<p>Served by python http.server inside a private network namespace.</p>\n"),
    "/hello.txt": ("text/plain; charset=utf-8", b"hello from the dissect lab\n"),
    "/data.json": ("application/json",
                   json.dumps({"lab": "dissect", "items": list(range(1, 11))}).encode() + b"\n"),
}

# (method, path, body) in the order the client sends them.
PLAN = (
    ("GET", "/", None),
    ("GET", "/hello.txt", None),
    ("GET", "/data.json", None),
    ("POST", "/submit", b"name=dissect&protocol=http&layer=7"),
    ("GET", "/missing", None),
)


class LabHTTPServer(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer without the reverse DNS lookup `server_bind` would make."""

    daemon_threads = True

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """Base handler: HTTP/1.1, no access log on stderr, helpers to answer and record."""

    protocol_version = "HTTP/1.1"
    server_version = "dissect-lab-httpd/0.1"
    rec = None  # set per server class

    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
        pass

    def answer(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
               headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def note(self, status: int, **extra) -> None:
        if self.rec is not None:
            self.rec.record("request", self.rec.now(), method=self.command, path=self.path,
                            status=status, client_port=self.client_address[1], **extra)


class PagesHandler(QuietHandler):
    def do_GET(self):  # noqa: N802 - http.server naming
        page = PAGES.get(self.path)
        if page is None:
            self.answer(404, b"not found\n")
            self.note(404)
            return
        self.answer(200, page[1], page[0])
        self.note(200)

    def do_POST(self):  # noqa: N802
        body = self.read_body()
        reply = json.dumps({"received": len(body), "path": self.path}).encode() + b"\n"
        self.answer(201, reply, "application/json", {"Location": "/submit/1"})
        self.note(201, request_bytes=len(body))


def bind(handler: type[QuietHandler], port: int, rec) -> LabHTTPServer:
    cls = type(handler.__name__, (handler,), {"rec": rec})
    return LabHTTPServer(("127.0.0.1", port), cls)


def serve_http(params, ctx):
    httpd = bind(PagesHandler, params["port"], ctx.rec)
    ctx.ready(port=params["port"], tls=False)
    try:
        httpd.serve_forever(poll_interval=0.1)
    finally:
        httpd.server_close()


def serve_https(params, ctx):
    workdir = Path(params["workdir"])
    cert, key = make_self_signed(workdir, params.get("sni", "dissect.test"))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    tls.set_alpn_protocols(["http/1.1"])
    httpd = bind(PagesHandler, params["port"], ctx.rec)
    httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    ctx.ready(port=params["port"], tls=True, cert=str(cert))
    try:
        httpd.serve_forever(poll_interval=0.1)
    finally:
        httpd.server_close()


class SniHTTPSConnection(http.client.HTTPSConnection):
    """Connect to an address but name a host in SNI (http.client sends none for IPs)."""

    def __init__(self, host, port, *, sni: str, context: ssl.SSLContext, timeout: float):
        super().__init__(host, port, context=context, timeout=timeout)
        self.sni = sni

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.sni)


def _run_plan(conn: http.client.HTTPConnection, rec, host_header: str | None) -> None:
    for method, path, body in PLAN:
        headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
        if host_header:
            headers["Host"] = host_header
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        start = rec.now()
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        end = rec.now()
        rec.record("request", start, end, method=method, path=path, status=resp.status,
                   reason=resp.reason, request_bytes=len(body or b""), response_bytes=len(data),
                   local_port=conn.sock.getsockname()[1], keep_alive=not resp.will_close)
    conn.close()


def client_http(params, rec):
    rec.policy = {"connection": "one keep-alive HTTP/1.1 connection for every request"}
    conn = http.client.HTTPConnection("127.0.0.1", params["port"], timeout=CLIENT_TIMEOUT_S)
    _run_plan(conn, rec, None)


def client_https(params, rec):
    sni = params.get("sni", "dissect.test")
    workdir = Path(params["workdir"])
    tls = ssl.create_default_context(cafile=str(workdir / "cert.pem"))
    tls.set_alpn_protocols(["http/1.1"])
    keylog = workdir / "client-keys.log"
    tls.keylog_filename = str(keylog)
    rec.policy = {"connection": "one keep-alive HTTP/1.1 connection over TLS",
                  "sni": sni, "alpn_offered": ["http/1.1"], "verify": "run-time self-signed CA"}
    conn = SniHTTPSConnection("127.0.0.1", params["port"], sni=sni, context=tls,
                              timeout=CLIENT_TIMEOUT_S)
    conn.connect()
    rec.info.update(tls_version=conn.sock.version(), cipher=conn.sock.cipher()[0],
                    alpn=conn.sock.selected_alpn_protocol(), server_hostname=sni)
    _run_plan(conn, rec, sni)
    if keylog.exists():
        rec.info["tls_keylog"] = keylog.read_text().splitlines()
