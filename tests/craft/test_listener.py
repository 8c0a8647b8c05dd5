"""The listeners are real servers: talk to them over 127.0.0.1 with plain sockets."""

from __future__ import annotations

import socket
import threading

import pytest

from dissect.craft import dialogue
from dissect.craft.listener import make_server


@pytest.fixture
def serve():
    servers = []

    def start(app, udp=False):
        srv = make_server(app, "127.0.0.1", 0, udp)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        servers.append(srv)
        return srv.server_address[1]
    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _recv_until(sock, pred, limit=65536):
    buf = b""
    while not pred(buf):
        chunk = sock.recv(limit)
        if not chunk:
            break
        buf += chunk
    return buf


def test_http_listener_answers_and_keeps_alive(serve):
    port = serve("http")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        for _ in range(2):
            c.sendall(dialogue.build_request("http", "GET /", port=port).data)
            got = _recv_until(c, lambda b: dialogue.answer_complete("http", b))
            assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(dialogue.HTTP_BODY)
        c.sendall(b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _recv_until(c, lambda b: dialogue.answer_complete("http", b)).startswith(
            b"HTTP/1.1 404")


@pytest.mark.parametrize("app,cmd,reply", [("ftp", b"USER anonymous\r\n", b"331 "),
                                           ("smtp", b"EHLO x\r\n", b"250-localhost")])
def test_line_listeners_greet_answer_and_close_after_quit(serve, app, cmd, reply):
    port = serve(app)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        greet = _recv_until(c, lambda b: dialogue.answer_complete(app, b))
        assert greet == dialogue.banner(app)
        c.sendall(cmd)
        assert _recv_until(c, lambda b: dialogue.answer_complete(app, b)).startswith(reply)
        c.sendall(b"QUIT\r\n")
        assert _recv_until(c, lambda b: False).startswith(b"221")   # then EOF: server closed


def test_echo_listeners(serve):
    port = serve("raw")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(b"abc")
        assert _recv_until(c, lambda b: len(b) >= 3) == b"abc"
    uport = serve("raw", udp=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(5)
        u.sendto(b"ping", ("127.0.0.1", uport))
        assert u.recvfrom(64)[0] == b"ping"
