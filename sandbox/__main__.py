"""`python -m sandbox [--port 5001] [--host 127.0.0.1]`: serve the simulated providers on the loopback interface.

`--port 0` takes a port the system picks: the line "Sandbox providers on http://HOST:PORT/" names it, printed
once the port is bound.

Only a loopback host is accepted, on purpose: the console needs no login. Whoever reaches the sandbox can arm faults,
read the journal and list every merchant's issued tokens and keys (`GET /`), so it must never listen where another
machine can reach it. (`flask --app sandbox run` binds to 127.0.0.1 unless told otherwise; do not tell it otherwise.)

The mail catcher (sandbox/mail.py) starts beside it on the same host, port SANDBOX_SMTP_PORT (default --port + 1; 0:
none), and stops with it; its mails are shown at /mail.
"""

from __future__ import annotations

import argparse
import sys

from werkzeug.serving import make_server

from sandbox.common import is_loopback


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="The simulated payment providers.")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5001, help="default 5001")
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        parser.error(f"refusing to listen on {args.host!r}: the console has no login, so only loopback is allowed")
    from sandbox import create_app, mail

    app = create_app()
    server = make_server(args.host, args.port, app, threaded=True)
    port = server.socket.getsockname()[1]
    print(f"Sandbox providers on http://{args.host}:{port}/ (console at /)", file=sys.stderr, flush=True)
    smtp_port = app.config.get("SANDBOX_SMTP_PORT")
    smtp_port = (args.port + 1 if args.port else 0) if smtp_port is None else smtp_port
    if smtp_port:
        try:
            mail.start(app, args.host, smtp_port)
            print(f"Mail catcher on smtp://{args.host}:{smtp_port} (mails at /mail)", file=sys.stderr)
        except OSError as exc:
            print(f"Mail catcher not started: port {smtp_port}: {exc} (set SANDBOX_SMTP_PORT)", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        mail.stop(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
