"""Web page and HTTP API over an index (FastAPI). ``create_app(index_or_path, settings) -> FastAPI``."""

from .app import create_app

__all__ = ["create_app"]
