"""What a backbone is, as data: its input preprocessing, output size, modality and weights source.

The registry of named backbones (``backbones.BACKBONES``) holds one ``BackboneSpec`` per name; the
preprocessing travels with the weights, so catalog and query images are always prepared alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable


@dataclass(frozen=True)
class Preprocess:
    """How an RGB image becomes the network's input; identical for catalog and query images."""

    size: int = 224
    resize: str = "pad"  # keep the aspect ratio: fit inside size x size, pad with white
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


@dataclass(frozen=True)
class WeightsInfo:
    """The weights an embedder loaded: written to the manifest, enough to load them again."""

    source: str  # "imagenet", "file", "random"
    sha256: str | None
    detail: str  # file path, torchvision weights name, or seed

    @property
    def argument(self) -> str:
        """The ``weights`` argument that loads these weights again."""
        return self.detail if self.source == "file" else self.source


@dataclass(frozen=True)
class BackboneSpec:
    """One registry entry. ``build(weights)`` returns (trunk giving an NCHW feature map, WeightsInfo)."""

    name: str
    dim: int
    preprocess: Preprocess
    build: Callable[[str], "tuple[object, WeightsInfo]"]
    weights_source: str  # where weights='imagenet' comes from
    description: str
    modality: str = "image"
    extra: str | None = None  # the pip extra that installs it, when it is optional
