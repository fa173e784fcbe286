#!/usr/bin/python3
"""SMTP peer for alert/email tests: Debian's aiosmtpd on loopback.

Each accepted message is written to OUT/<n>.eml with the envelope
recipients in OUT/<n>.rcpt; it prints READY once it listens.
"""
import argparse
import os
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Sink:
    def __init__(self, out):
        self.out = out
        self.n = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.n += 1
            base = os.path.join(self.out, "%d" % self.n)
        with open(base + ".rcpt.tmp", "w") as f:
            f.write("\n".join(envelope.rcpt_tos) + "\n")
        os.rename(base + ".rcpt.tmp", base + ".rcpt")
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 OK"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--implicit", action="store_true")
    p.add_argument("--user", default="")
    p.add_argument("--password", default="")
    a = p.parse_args()

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (auth_data.login.decode() == a.user and auth_data.password.decode() == a.password)
        return AuthResult(success=ok)

    kw = dict(hostname="127.0.0.1", port=a.port)
    if a.user:
        kw.update(authenticator=authenticate, auth_required=True, auth_require_tls=True)
    if a.implicit:
        kw.update(ssl_context=ctx)
    else:
        kw.update(tls_context=ctx, require_starttls=True)
    c = Controller(Sink(a.out), **kw)
    c.start()
    print("READY", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    c.stop()


if __name__ == "__main__":
    main()
