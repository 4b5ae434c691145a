"""stylelens: fashion recommendations from a photo.

    from stylelens import build_index, open_index
    report = build_index("catalog/", "my-index")
    index = open_index("my-index")
    result = index.search("photo.jpg", k=5, gender="Women", max_price=50)
"""

from .embedder import BACKBONES, Embedder
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
