"""serve: the web page and HTTP API over an index."""

from __future__ import annotations

from ..errors import InvalidArgumentError
from .options import add_setting_flags, settings_from


def register(sub) -> None:
    p = sub.add_parser("serve", help="Serve the web page and the HTTP API over an index.")
    p.add_argument("index", help="Index folder, or postgresql://[USER@]HOST[:PORT]/DB for an index in PostgreSQL that "
                                 "replicas on any machine serve together.")
    add_setting_flags(p, "host", "port", "max_upload_bytes", "search", "tune", "parser", "runtime", "precision", "batch_wait_ms")
    p.add_argument("--auth", action="store_true",
                   help="Shopper tokens: likes and 'For you' need the shopper's token (signed with STYLELENS_AUTH_SECRET, "
                        "or a secret made for this run when it is not set).")
    p.add_argument("--workers", type=int, default=1,
                   help="Server processes on this port, each with its own model and its own view of the index (default 1). "
                        "They share the index as replicas do: what one records, the others read.")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                   help="Server log detail (access log at info).")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    import uvicorn

    from ..index import open_store
    from ..service import create_app

    settings = settings_from(args)
    if getattr(args, "auth", False) and not settings.auth_secret:
        import secrets

        # Tokens then last as long as this server: replicas and restarts need STYLELENS_AUTH_SECRET.
        settings = settings.replace(auth_secret=secrets.token_hex(32))
    host, port = settings.host, settings.port
    warn_if_exposed(settings)
    # Opened first: "no index" (a wrong path, location or password) is the news, in one line, even while another
    # server holds the port; the port is checked before the model loads, so a busy one fails in a second.
    store = open_store(args.index, settings=settings)
    try:
        check_port_free(host, port)
        if args.workers < 1:
            raise InvalidArgumentError(f"--workers must be 1 or more, got {args.workers}.", code="bad_option")
        if args.workers > 1:
            settle_workers(args, settings, store)
    finally:
        store.close()  # the server (or each worker) opens its own
    if args.workers > 1:
        return serve_workers(args, settings)
    app = create_app(args.index, settings)
    index = app.state.index
    print(f"stylelens: {len(index):,} products from {index.path} ({index.embedder.spec.name}, {index.store.backend.name} search)",
          flush=True)
    print(f"stylelens: open http://{host}:{port}/  (API docs at http://{host}:{port}/docs)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=args.log_level)
    return 0


def settle_workers(args, settings, store) -> None:
    """What N workers must agree on, decided once here with the store the command checked: the shopper secret
    (the workers starting together then read the same one), and one line of what they serve."""
    from ..service.auth import shopper_secret

    shopper_secret(settings, store.database)
    print(f"stylelens: {len(store):,} products from {store.path} ({store.backend.name} search), {args.workers} workers",
          flush=True)


def serve_workers(args, settings) -> int:
    """N uvicorn worker processes: each builds its app from the location and settings handed down in
    its environment (settings.py's STYLELENS_* names), so they serve the same index the same way."""
    import os

    import uvicorn

    from ..service.app import SERVE_ENV, serve_value

    os.environ[SERVE_ENV] = serve_value(args.index, settings)
    print(f"stylelens: open http://{settings.host}:{settings.port}/  (API docs at http://{settings.host}:{settings.port}/docs)",
          flush=True)
    uvicorn.run("stylelens.service.app:app_from_environment", factory=True, workers=args.workers, host=settings.host,
                port=settings.port, log_level=args.log_level)
    return 0


def warn_if_exposed(settings) -> None:
    """One line when shoppers on other machines reach this server with only anonymous cookies, over plain HTTP."""
    import sys

    from ..service.app import _loopback

    if not _loopback(settings.host) and not settings.auth_secret:
        print(f"stylelens: warning: serving on {settings.host} without --auth: each browser is an anonymous shopper "
              "(a signed cookie); put it behind a TLS proxy and set allowed_hosts (see docs/security.md).",
              file=sys.stderr, flush=True)


def check_port_free(host: str, port: int) -> None:
    import socket

    from ..errors import InvalidArgumentError

    if not 0 < port < 65536:
        raise InvalidArgumentError(f"--port must be between 1 and 65535, got {port}.", code="bad_option")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
    except OSError as exc:
        raise InvalidArgumentError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}): another server may be using it. "
                                   f"Pass --port with a free port, or stop the other server.", code="port_in_use") from None
