"""The query layer: a photo and a request through the stages of ``query.pipeline`` (locate → cut out → embed →
neighbours → filter → identify → personalise → rank → diversify → hydrate), behind the front object ``Index``."""

from .filters import Filters
from .identify import Identification
from .index import Index, open_index
from .request import Photo, SearchRequest
from .results import SearchResult

__all__ = ["Filters", "Identification", "Index", "Photo", "SearchRequest", "SearchResult", "open_index"]
