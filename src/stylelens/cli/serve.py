"""serve: the web page and HTTP API over an index."""

from __future__ import annotations

from .. import config


def register(sub) -> None:
    p = sub.add_parser("serve", help="Serve the web page and the HTTP API over an index.")
    p.add_argument("index", help="Index folder.")
    p.add_argument("--host", default=None, help=config.SETTINGS["host"].help + f" Default {config.get('host')}.")
    p.add_argument("--port", type=int, default=None, help=config.SETTINGS["port"].help + f" Default {config.get('port')}.")
    p.add_argument("--max-upload-bytes", type=int, default=None, help=config.SETTINGS["max_upload_bytes"].help)
    p.add_argument("--search", default=None, help=config.SETTINGS["search"].help)
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                   help="Server log detail (access log at info).")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    import uvicorn

    from ..service import create_app

    host = args.host or config.get("host")
    port = config.get("port") if args.port is None else args.port
    app = create_app(args.index, {"max_upload_bytes": args.max_upload_bytes, "search": args.search})
    index = app.state.index
    print(f"stylelens: {len(index):,} products from {args.index} ({index.embedder.spec.name}, {index.searcher.name} search)",
          flush=True)
    print(f"stylelens: open http://{host}:{port}/  (API docs at http://{host}:{port}/docs)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=args.log_level)
    return 0
