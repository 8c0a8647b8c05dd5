"""The real servers ``--listen`` starts: kernel TCP/UDP sockets that accept, read and
answer (``python -m dissect.craft.listener --app http --port 8080``).

* http: Python's ``http.server`` (HTTP/1.1, keep-alive) answering with
  :func:`dissect.craft.dialogue.http_answer`;
* ftp / smtp: a greeting banner, then one reply per command line, closing after QUIT;
* raw: echoes what it reads until the client closes;
* udp: echoes each datagram.

Prints ``READY <port>`` once bound; runs until SIGTERM/SIGINT. What clients send is only
parsed and answered, never executed or used as a path.
"""

from __future__ import annotations

import argparse
import http.server
import signal
import socket
import socketserver
import sys
import time

from dissect.craft.dialogue import (
    MAX_READ_BYTES,
    SERVER_NAME,
    banner,
    closes_after,
    command_answer,
    http_answer,
)

# A connection idle this long is closed by the listener (our client never waits this long).
IDLE_TIMEOUT_S = 30.0


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class HttpHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = SERVER_NAME
    sys_version = ""
    timeout = IDLE_TIMEOUT_S

    def log_message(self, *_a):   # quiet: the capture is the record
        pass

    def _answer(self):
        n = self.headers.get("Content-Length")
        if n and n.isdigit():
            self.rfile.read(min(int(n), MAX_READ_BYTES))
        self.wfile.write(http_answer(self.requestline.encode("latin-1", "replace") + b"\r\n",
                                     time.time()))
        self.wfile.flush()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _answer


class LineHandler(socketserver.StreamRequestHandler):
    """ftp / smtp: banner, then one answer per command line."""

    app = "ftp"
    timeout = IDLE_TIMEOUT_S

    def handle(self):
        greet = banner(self.app)
        if greet:
            self.wfile.write(greet)
        while True:
            try:
                line = self.rfile.readline(MAX_READ_BYTES)
            except OSError:
                return
            if not line:
                return
            self.wfile.write(command_answer(self.app, line))
            if closes_after(self.app, line):
                return


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(IDLE_TIMEOUT_S)
        while True:
            try:
                data = self.request.recv(MAX_READ_BYTES)
            except OSError:
                return
            if not data:
                return
            self.request.sendall(data)


class UdpEchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data, self.client_address)


def make_server(app: str, host: str, port: int, udp: bool = False):
    fam = _family(host)
    if udp:
        cls = type("UdpServer", (socketserver.UDPServer,), {"address_family": fam,
                                                             "allow_reuse_address": True})
        return cls((host, port), UdpEchoHandler)
    handler = {"http": HttpHandler, "raw": EchoHandler}.get(app)
    if handler is None:
        handler = type(f"{app.title()}Handler", (LineHandler,), {"app": app})
    cls = type("TcpServer", (socketserver.ThreadingTCPServer,),
               {"address_family": fam, "allow_reuse_address": True, "daemon_threads": True})
    return cls((host, port), handler)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dissect.craft.listener")
    ap.add_argument("--app", choices=("http", "ftp", "smtp", "raw"), default="raw")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--udp", action="store_true")
    args = ap.parse_args(argv)

    def stop(_s, _f):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    srv = make_server(args.app, args.host, args.port, args.udp)
    print(f"READY {srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.1)
    except SystemExit:
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
