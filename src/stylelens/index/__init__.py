"""The index layer: an index folder's manifest and catalog, and the vector backend chosen by location."""

from .backend import BACKENDS, VectorBackend
from .catalog_db import LABEL_COLUMNS, PRODUCT_COLUMNS, Columns
from .store import IndexStore, create_store, open_store, remove_products

__all__ = ["BACKENDS", "Columns", "IndexStore", "LABEL_COLUMNS", "PRODUCT_COLUMNS", "VectorBackend", "create_store",
           "open_store", "remove_products"]
