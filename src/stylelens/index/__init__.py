"""The index layer: a ``Database`` (manifest, catalog, artifacts, events, lock) and a ``VectorBackend``, each chosen
by location, behind one front store."""

from .backend import BACKENDS, VectorBackend
from .catalog_db import LABEL_COLUMNS, PRODUCT_COLUMNS, Columns
from .database import DATABASES, Database
from .store import IndexStore, create_store, open_store, remove_products

__all__ = ["BACKENDS", "Columns", "DATABASES", "Database", "IndexStore", "LABEL_COLUMNS", "PRODUCT_COLUMNS", "VectorBackend", "create_store",
           "open_store", "remove_products"]
