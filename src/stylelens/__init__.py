"""stylelens: fashion recommendations from a photo.

    from stylelens import build_index, open_index
    report = build_index("catalog/", "my-index")
    index = open_index("my-index")
    result = index.search("photo.jpg", k=5, gender="Women", max_price=50)
"""

import os as _os

# OpenBLAS keeps its idle threads spinning for 2**28 cycles (~0.1 s) after every call, so on a small CPU a
# search steals the cores from the next image's inference (2 cores, ResNet-50 query p50 84 -> 51 ms).
# OpenBLAS reads this when numpy loads it: it only takes effect if stylelens is imported before numpy.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

# Public names, imported when first used (PEP 562): `import stylelens.intake.catalog` or the CLI's --help does
# not load torch, and nothing below imports this package's top.
_EXPORTS = {
    "BACKBONES": "models", "Embedder": "models",
    "CatalogError": "errors", "ImageError": "errors", "IndexDamagedError": "errors", "IndexMismatchError": "errors",
    "IndexNotFoundError": "errors", "InvalidArgumentError": "errors", "MissingExtraError": "errors",
    "ProductNotFoundError": "errors", "StylelensError": "errors", "WeightsError": "errors",
    "Settings": "settings",
    "export_features": "index.export",
    "complete_the_look": "query.look",
    "feedback": "query.personalize", "forget": "query.personalize", "recommend_for_user": "query.personalize",
    "BuildReport": "build", "build_index": "build",
    "Filters": "query", "Identification": "query", "Index": "query", "SearchResult": "query", "open_index": "query",
    "IndexStore": "index", "remove_products": "index",
}

__all__ = sorted(_EXPORTS)


def _installed_version() -> str:
    """One place for the version: pyproject.toml, as installed. Read when first asked for (``__version__``):
    importlib.metadata costs most of a bare ``import stylelens``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stylelens")
    except PackageNotFoundError:  # a source tree on PYTHONPATH without an install
        return "0+unknown"


def __getattr__(name: str):
    if name == "__version__":
        globals()[name] = value = _installed_version()
        return value
    if name not in _EXPORTS:
        raise AttributeError(f"module 'stylelens' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | {"__version__"})
