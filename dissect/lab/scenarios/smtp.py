"""smtp: an aiosmtpd server and an smtplib client.

The client greets with EHLO, sends MAIL FROM, two RCPT TO and DATA with a small text
message, then QUIT, recording each command's reply code and time. The server (aiosmtpd's
SMTP protocol on an asyncio server, no Controller, so no self-test connection) records
the envelope it accepted.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

SENDER = "alice@dissect.test"
RECIPIENTS = ("bob@dissect.test", "carol@dissect.test")
CLIENT_NAME = "client.dissect.test"  # given explicitly: smtplib would look up the FQDN
SERVER_NAME = "mail.dissect.test"    # likewise for aiosmtpd
CLIENT_TIMEOUT_S = 10.0


def serve(params, ctx):
    from aiosmtpd.smtp import SMTP

    rec = ctx.rec

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd hook
            rec.record("message", rec.now(), mail_from=envelope.mail_from,
                       rcpt_tos=list(envelope.rcpt_tos), bytes=len(envelope.content or b""))
            return "250 2.0.0 Message accepted for delivery"

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Handler(), hostname=SERVER_NAME, ident="dissect lab ESMTP"),
            "127.0.0.1", params["port"])
        ctx.ready(port=params["port"])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def client(params, rec):
    import smtplib

    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = ", ".join(RECIPIENTS)
    msg["Subject"] = "dissect lab: SMTP scenario"
    msg["Message-ID"] = f"<lab-{params.get('seed', 0)}@dissect.test>"
    msg.set_content("Hello Bob and Carol,\n\nthis message was sent by the dissect loopback lab.\n")
    rec.policy = {"sender": SENDER, "recipients": list(RECIPIENTS)}

    def step(command, fn):
        start = rec.now()
        code, text = fn()
        text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
        rec.record("command", start, rec.now(), command=command, code=code,
                   reply=text.splitlines()[0] if text else "")
        return code

    smtp = smtplib.SMTP(local_hostname=CLIENT_NAME, timeout=CLIENT_TIMEOUT_S)
    step("connect", lambda: smtp.connect("127.0.0.1", params["port"]))
    step("EHLO", lambda: smtp.ehlo(CLIENT_NAME))
    step("MAIL FROM", lambda: smtp.mail(SENDER))
    for rcpt in RECIPIENTS:
        step(f"RCPT TO {rcpt}", lambda r=rcpt: smtp.rcpt(r))
    step("DATA", lambda: smtp.data(msg.as_bytes()))
    step("QUIT", smtp.quit)
