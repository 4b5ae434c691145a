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

from .embedder import BACKBONES, Embedder  # noqa: E402
from .errors import (CatalogError, ImageError, IndexMismatchError, IndexNotFoundError, InvalidArgumentError,
                     MissingExtraError, ProductNotFoundError, StylelensError, WeightsError)
from .export import export_features
from .look import complete_the_look
from .personalize import feedback, forget, recommend_for_user
from .pipeline import BuildReport, build_index
from .recommend import Filters, Identification, Index, SearchResult, open_index
from .store import IndexStore, remove_products

__version__ = "0.1.0"

__all__ = [
    "BACKBONES", "BuildReport", "CatalogError", "Embedder", "Filters", "Identification", "ImageError", "Index",
    "IndexMismatchError", "IndexNotFoundError", "IndexStore", "InvalidArgumentError", "MissingExtraError",
    "ProductNotFoundError", "SearchResult", "StylelensError", "WeightsError", "build_index", "complete_the_look",
    "export_features", "feedback", "forget", "open_index", "recommend_for_user", "remove_products",
]
