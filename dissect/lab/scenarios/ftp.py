"""ftp-active and ftp-passive: a pyftpdlib server and an ftplib client.

The server serves a temporary directory to one user (``dissect`` / ``lab-password``).
The client logs in, asks PWD, switches to binary, lists the directory, downloads
``readme.txt`` and uploads ``upload.bin`` (bytes drawn from the seed), then quits. In
active mode the client sends PORT and the server connects back for each transfer; in
passive mode the client sends PASV and connects to the port the server names.
"""

from __future__ import annotations

import io
import logging
import random
from pathlib import Path

USER, PASSWORD = "dissect", "lab-password"
PASSIVE_PORTS = range(50100, 50110)  # fixed so captures look alike from run to run
CLIENT_TIMEOUT_S = 10.0
README = b"".join(b"line %02d of the dissect lab's FTP readme\r\n" % i for i in range(1, 41))


def serve(params, ctx):
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
    root = Path(params["workdir"]) / "ftproot"
    (root / "pub").mkdir(parents=True)
    (root / "readme.txt").write_bytes(README)
    auth = DummyAuthorizer()
    auth.add_user(USER, PASSWORD, str(root), perm="elradfmw")
    rec = ctx.rec

    class Handler(FTPHandler):
        banner = "dissect lab FTP server ready."
        passive_ports = PASSIVE_PORTS

        def on_login(self, username):
            rec.record("login", rec.now(), user=username)

        def on_file_sent(self, file):
            rec.record("file-sent", rec.now(), file=Path(file).name)

        def on_file_received(self, file):
            rec.record("file-received", rec.now(), file=Path(file).name,
                       bytes=Path(file).stat().st_size)

    Handler.authorizer = auth
    server = FTPServer(("127.0.0.1", params["port"]), Handler)
    ctx.ready(port=params["port"], root=str(root))
    try:
        server.serve_forever(timeout=0.1)
    finally:
        server.close_all()


def client(params, rec):
    import ftplib

    passive = bool(params["passive"])
    upload = random.Random(f"ftp:{params.get('seed', 0)}").randbytes(3000)
    rec.policy = {"mode": "passive (PASV)" if passive else "active (PORT)", "user": USER,
                  "upload_bytes": len(upload)}

    def step(command, fn):
        start = rec.now()
        reply = fn()
        rec.record("command", start, rec.now(), command=command,
                   reply=reply if isinstance(reply, str) else None)
        return reply

    ftp = ftplib.FTP()
    step("connect", lambda: ftp.connect("127.0.0.1", params["port"], timeout=CLIENT_TIMEOUT_S))
    step("USER/PASS", lambda: ftp.login(USER, PASSWORD))
    ftp.set_pasv(passive)
    step("PWD", lambda: ftp.sendcmd("PWD"))
    step("TYPE I", lambda: ftp.sendcmd("TYPE I"))
    listing: list[str] = []
    step("LIST", lambda: ftp.retrlines("LIST", listing.append))
    got = bytearray()
    step("RETR readme.txt", lambda: ftp.retrbinary("RETR readme.txt", got.extend))
    step("STOR upload.bin", lambda: ftp.storbinary("STOR upload.bin", io.BytesIO(upload)))
    step("QUIT", ftp.quit)
    rec.info.update(listing=listing, retr_bytes=len(got), retr_ok=bytes(got) == README)
