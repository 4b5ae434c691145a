"""Images -> unit vectors: the backbone registry, its preprocessing, and the runtimes that run it."""

from .backbones import BACKBONES
from .batching import MicroBatcher
from .embedder import Embedder, library_versions, prepare
from .spec import BackboneSpec, Preprocess, WeightsInfo

__all__ = ["BACKBONES", "BackboneSpec", "Embedder", "MicroBatcher", "Preprocess", "WeightsInfo", "library_versions", "prepare"]
