"""Images -> unit vectors: the backbone registry, its preprocessing, and the runtimes that run it."""

from .backbones import BACKBONES
from .batching import MicroBatcher
from .embedder import OFFLINE_BACKBONE, Embedder, embedder_for_settings, library_versions, prepare
from .spec import BackboneSpec, Preprocess, WeightsInfo

__all__ = ["BACKBONES", "BackboneSpec", "Embedder", "MicroBatcher", "OFFLINE_BACKBONE", "embedder_for_settings", "Preprocess", "WeightsInfo", "library_versions", "prepare"]
