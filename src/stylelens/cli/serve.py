"""serve: the web page and HTTP API over an index."""

from __future__ import annotations

from .options import add_setting_flags, settings_from


def register(sub) -> None:
    p = sub.add_parser("serve", help="Serve the web page and the HTTP API over an index.")
    p.add_argument("index", help="Index folder.")
    add_setting_flags(p, "host", "port", "max_upload_bytes", "search", "runtime", "precision", "batch_wait_ms")
    p.add_argument("--auth", action="store_true",
                   help="Shopper tokens: likes and 'For you' need the shopper's token (signed with STYLELENS_AUTH_SECRET, "
                        "or a secret made for this run when it is not set).")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                   help="Server log detail (access log at info).")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    import uvicorn

    from ..service import create_app

    settings = settings_from(args)
    if getattr(args, "auth", False) and not settings.auth_secret:
        import secrets

        # Tokens then last as long as this server: replicas and restarts need STYLELENS_AUTH_SECRET.
        settings = settings.replace(auth_secret=secrets.token_hex(32))
    host, port = settings.host, settings.port
    check_port_free(host, port)  # before loading the model: a busy port fails in a second, with a hint
    app = create_app(args.index, settings)
    index = app.state.index
    print(f"stylelens: {len(index):,} products from {args.index} ({index.embedder.spec.name}, {index.store.backend.name} search)",
          flush=True)
    print(f"stylelens: open http://{host}:{port}/  (API docs at http://{host}:{port}/docs)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=args.log_level)
    return 0


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
