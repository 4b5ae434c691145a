"""serve: the web page and HTTP API over an index."""

from __future__ import annotations

from .options import add_setting_flags, settings_from


def register(sub) -> None:
    p = sub.add_parser("serve", help="Serve the web page and the HTTP API over an index.")
    p.add_argument("index", help="Index folder.")
    add_setting_flags(p, "host", "port", "max_upload_bytes", "search")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                   help="Server log detail (access log at info).")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    import uvicorn

    from ..service import create_app

    settings = settings_from(args)
    host, port = settings.host, settings.port
    app = create_app(args.index, settings)
    index = app.state.index
    print(f"stylelens: {len(index):,} products from {args.index} ({index.embedder.spec.name}, {index.store.backend.name} search)",
          flush=True)
    print(f"stylelens: open http://{host}:{port}/  (API docs at http://{host}:{port}/docs)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=args.log_level)
    return 0
