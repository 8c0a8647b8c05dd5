"""websocket: an echo server and client built on the ``websockets`` package (sync API).

The client opens ws://127.0.0.1/echo (an HTTP/1.1 Upgrade, so Wireshark sees the
handshake and then WebSocket frames), sends a text message and a binary message and
reads each echo, sends a ping and waits for the pong, and closes with code 1000.
Compression (permessage-deflate) is off on both sides so payloads stay readable.
"""

from __future__ import annotations

import random

PATH = "/echo"
CLIENT_TIMEOUT_S = 10.0


def serve(params, ctx):
    from websockets.sync.server import serve as ws_serve

    rec = ctx.rec

    def handler(conn):
        for message in conn:
            conn.send(message)
            rec.record("echoed", rec.now(), type="text" if isinstance(message, str) else "binary",
                       bytes=len(message))

    with ws_serve(handler, "127.0.0.1", params["port"], compression=None,
                  server_header="dissect-lab-ws/0.1") as server:
        ctx.ready(port=params["port"], path=PATH)
        server.serve_forever()


def client(params, rec):
    from websockets.sync.client import connect

    binary = random.Random(f"ws:{params.get('seed', 0)}").randbytes(200)
    text = "hello from the dissect lab over WebSocket"
    rec.policy = {"url": f"ws://127.0.0.1:{params['port']}{PATH}", "compression": None}
    start = rec.now()
    ws = connect(f"ws://127.0.0.1:{params['port']}{PATH}", compression=None,
                 open_timeout=CLIENT_TIMEOUT_S, close_timeout=CLIENT_TIMEOUT_S,
                 user_agent_header="dissect-lab/0.1")
    rec.record("handshake", start, rec.now(), status=ws.response.status_code)
    for kind, message in (("text", text), ("binary", binary)):
        start = rec.now()
        ws.send(message)
        back = ws.recv(timeout=CLIENT_TIMEOUT_S)
        rec.record("message", start, rec.now(), opcode=1 if kind == "text" else 2, type=kind,
                   bytes=len(message), echoed=back == message)
    start = rec.now()
    pong = ws.ping(b"lab-ping")
    ok = pong.wait(CLIENT_TIMEOUT_S)
    rec.record("ping", start, rec.now(), opcode=9, payload="lab-ping", pong=bool(ok))
    start = rec.now()
    ws.close(1000, "done")
    rec.record("close", start, rec.now(), opcode=8, code=1000, reason="done")
