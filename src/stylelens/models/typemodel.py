"""The item's type from a model that has seen real photos: a small head over a frozen backbone's pooled vector.

The neighbour vote names a type from the catalog's own shots, and real photos (a garment flat on a bed, on
a hanger, worn in the street) do not look like them. The type model is a linear or one-hidden-layer head,
trained by ``scripts/train_type_model.py`` on the catalog's labels plus the real photos' train parts, over
the pooled vector of one named backbone. Its softmax is calibrated (one temperature) and below a
confidence threshold it answers "not sure", so the caller can fall back to the plain neighbours.

Stored as two files: ``NAME.npz`` (plain arrays, no pickle) and ``NAME.json`` (its metadata: backbone,
pooling, input size, type vocabulary, temperature, threshold, training data, the npz's sha256). The
forward pass is numpy. Its input is its own backbone's vector: when the index was built with the same
backbone, pooling and input size (``accepts(fingerprint)``) the stored or query vector is reused;
otherwise the caller builds ``Embedder(**model.embedder_options())`` for it.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InvalidArgumentError, WeightsError

FORMAT = "stylelens-typemodel"
FORMAT_VERSION = 1
DEFAULT_PATH = Path(__file__).resolve().parent / "weights" / "typemodel.npz"
RETRAIN = "python scripts/train_type_model.py (see its --help)"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def meta_path(path: Path) -> Path:
    """The metadata file beside a weights file: ``typemodel.npz`` -> ``typemodel.json``."""
    return Path(path).with_suffix(".json")


@dataclass
class TypeModel:
    """Standardise -> [hidden ReLU layer] -> logits over ``types`` -> softmax at ``temperature``."""

    backbone: str
    pooling: str
    input_size: int
    types: tuple[str, ...]
    mean: np.ndarray  # (dim,) feature standardisation, from the training vectors
    scale: np.ndarray  # (dim,)
    layers: list[tuple[np.ndarray, np.ndarray]]  # (W (in, out), b (out,)); ReLU between, none after the last
    temperature: float = 1.0
    threshold: float = 0.0  # calibrated confidence below which the answer is "not sure"
    meta: dict = field(default_factory=dict)  # training data, measured accuracy, ...

    def __post_init__(self):
        self.types = tuple(self.types)
        if not self.layers or self.layers[-1][0].shape[1] != len(self.types):
            raise ValueError("the last layer must have one output per type")
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")

    @functools.cached_property
    def taught_sets(self) -> list[frozenset[str]]:
        """The type sets the real photos were labelled with (the model cannot tell their members apart)."""
        return [frozenset(s) for s in self.meta.get("taught_sets", ())]

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    # ---- forward ------------------------------------------------------------------------------
    def logits(self, vectors: np.ndarray) -> np.ndarray:
        x = np.asarray(vectors, np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InvalidArgumentError(
                f"The type model takes {self.dim}-d {self.backbone} vectors ({self.pooling} pooling), got shape "
                f"{tuple(np.shape(vectors))}. Embed the image with Embedder(**model.embedder_options()).", code="bad_vector")
        h = (x - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h

    def probabilities(self, vectors: np.ndarray, temperature: float | None = None) -> np.ndarray:
        """(N, len(types)) calibrated probabilities (``temperature``: override the stored one)."""
        z = self.logits(vectors).astype(np.float64) / (temperature or self.temperature)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)

    def predict(self, vectors: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(types, confidences, sure): the most probable type of each vector, its calibrated probability,
        and whether that reaches the threshold (else the caller treats the type as unknown)."""
        p = self.probabilities(vectors)
        best = p.argmax(axis=1)
        conf = p[np.arange(len(p)), best]
        return [self.types[i] for i in best], conf, conf >= self.threshold

    # ---- its input ----------------------------------------------------------------------------
    def embedder_options(self) -> dict:
        """Keyword arguments of the ``Embedder`` whose vectors this model reads."""
        return {"backbone": self.backbone, "weights": "imagenet", "pooling": self.pooling, "input_size": self.input_size}

    def accepts(self, fingerprint: dict) -> bool:
        """Whether vectors of an embedder with this fingerprint (an index manifest's) are this model's input."""
        size = (fingerprint.get("preprocess") or {}).get("size")
        weights = (fingerprint.get("weights") or {}).get("source")
        return (fingerprint.get("backbone") == self.backbone and fingerprint.get("pooling") == self.pooling
                and size == self.input_size and weights == "imagenet")

    # ---- files --------------------------------------------------------------------------------
    def to_bytes(self) -> tuple[bytes, dict]:
        """(the npz's bytes, its metadata): what ``save`` writes, or an index keeps (``stylelens tune``'s probe)."""
        arrays = {"mean": self.mean.astype(np.float32), "scale": self.scale.astype(np.float32)}
        for i, (w, b) in enumerate(self.layers):
            arrays[f"w{i}"], arrays[f"b{i}"] = w.astype(np.float32), b.astype(np.float32)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        data = buf.getvalue()
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "backbone": self.backbone, "pooling": self.pooling,
                "input_size": self.input_size, "layers": len(self.layers), "types": list(self.types),
                "temperature": self.temperature, "threshold": self.threshold, "sha256": sha256(data), **self.meta}
        return data, meta

    def save(self, path: Path) -> dict:
        """Write ``path`` (npz) and its metadata JSON beside it; returns the metadata."""
        path = Path(path)
        data, meta = self.to_bytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        meta_path(path).write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")
        return meta

    @classmethod
    def load(cls, path: Path | str | None = None) -> "TypeModel":
        """The model at ``path`` (default: the one shipped in ``models/weights/``). WeightsError when a file is
        missing, damaged or does not match its metadata."""
        path = Path(path) if path is not None else DEFAULT_PATH
        meta_file = meta_path(path)
        for f in (path, meta_file):
            if not f.is_file():
                raise WeightsError(f"Type model file {f} does not exist. Reinstall stylelens or rebuild it with {RETRAIN}.",
                                   code="typemodel_missing")
        try:
            meta = json.loads(meta_file.read_text())
            if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format {meta.get('format')!r} v{meta.get('format_version')}")
        except (ValueError, AttributeError) as exc:
            raise WeightsError(f"Type model metadata {meta_file} is damaged ({exc}). Rebuild it with {RETRAIN}.",
                               code="typemodel_damaged") from exc
        return cls.from_bytes(path.read_bytes(), meta, f"{path} (its sha256 is in {meta_file.name})")

    @classmethod
    def from_bytes(cls, data: bytes, meta: dict, where: str, rebuild: str = f"Rebuild them with {RETRAIN}.") -> "TypeModel":
        """The model from ``to_bytes``'s pair; WeightsError naming ``where`` (and what to do: ``rebuild``) when they do
        not match or are damaged."""
        if sha256(data) != meta.get("sha256"):
            raise WeightsError(f"Type model weights {where} do not match their sha256 (damaged or replaced). {rebuild}",
                               code="typemodel_damaged")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            layers = [(arrays[f"w{i}"], arrays[f"b{i}"]) for i in range(int(meta["layers"]))]
            known = {"format", "format_version", "backbone", "pooling", "input_size", "layers", "types", "temperature",
                     "threshold", "sha256"}
            return cls(meta["backbone"], meta["pooling"], int(meta["input_size"]), tuple(meta["types"]), arrays["mean"],
                       arrays["scale"], layers, float(meta["temperature"]), float(meta["threshold"]),
                       {k: v for k, v in meta.items() if k not in known})
        except (KeyError, ValueError, OSError) as exc:
            raise WeightsError(f"Type model weights {where} are damaged ({type(exc).__name__}: {exc}). {rebuild}",
                               code="typemodel_damaged") from exc
