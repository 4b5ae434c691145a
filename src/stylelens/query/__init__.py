"""The query layer: filters, the one identification vote, ranking, personalisation, complete-the-look,
and the front object ``Index`` that runs them over one neighbour pass per query."""

from .filters import Filters
from .identify import Identification
from .index import Index, open_index
from .results import SearchResult

__all__ = ["Filters", "Identification", "Index", "SearchResult", "open_index"]
