"""The item's type from a model that has seen real photos: a small head over a frozen backbone's pooled vector.

The neighbour vote names a type from the catalog's own shots, and real photos (a garment flat on a bed, on
a hanger, worn in the street) do not look like them. The type model is a linear or one-hidden-layer head,
trained by ``scripts/train_type_model.py`` on the catalog's labels plus the real photos' train parts, over
the pooled vector of one named backbone. Its softmax is calibrated (one temperature) and below a
confidence threshold it answers "not sure", so the caller can fall back to the plain neighbours.

Worn garments (a garment parser's groups) may have a head of their own (``WornHead``): trained on street photos'
worn garments alone, it reads the same vector as the probability of each street label of the group ("blouse",
"shirt", "t-shirt"...), and a catalog type's score is the probability that the garment's label holds it (a
blouse is Tops, Shirts or Tunics). That is the chance a search within that one type finds the garment.

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
class WornHead:
    """One garment group's head: standardise -> logits over the group's street labels -> softmax at
    ``temperature``; each label's catalog types (``label_types``) turn label probabilities into type scores."""

    labels: tuple[str, ...]
    label_types: tuple[frozenset[str], ...]
    mean: np.ndarray
    scale: np.ndarray
    w: np.ndarray  # (dim, labels)
    b: np.ndarray  # (labels,)
    temperature: float = 1.0

    def __post_init__(self):
        self.labels, self.label_types = tuple(self.labels), tuple(frozenset(t) for t in self.label_types)
        if self.w.shape[1] != len(self.labels) or len(self.label_types) != len(self.labels):
            raise ValueError("a worn head needs one output and one type set per label")

    @functools.cached_property
    def types(self) -> tuple[str, ...]:
        return tuple(sorted(set().union(*self.label_types)))

    def label_probabilities(self, x: np.ndarray) -> np.ndarray:
        z = (((x - self.mean) / self.scale) @ self.w + self.b).astype(np.float64) / self.temperature
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def type_scores(self, x: np.ndarray) -> np.ndarray:
        """(N, len(types)): the probability that the garment's label holds each type (rows need not sum to 1)."""
        cover = np.array([[t in s for t in self.types] for s in self.label_types], np.float64)
        return (self.label_probabilities(x) @ cover).astype(np.float32)


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
    worn: dict[str, WornHead] = field(default_factory=dict)  # group -> its worn garments' own head

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

    def worn_scores(self, vectors: np.ndarray, group: str) -> dict[str, float] | None:
        """A worn garment's type scores by its group's head (type -> score, best first), None without one."""
        head = self.worn.get(group)
        if head is None:
            return None
        x = np.asarray(vectors, np.float32).reshape(1, -1)
        if x.shape[1] != self.dim:
            self.logits(x)  # raises the bad-vector error
        s = head.type_scores(x)[0]
        return {head.types[i]: float(s[i]) for i in np.argsort(-s, kind="stable")}

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
        for group, head in self.worn.items():
            for name in ("mean", "scale", "w", "b"):
                arrays[f"worn_{group}_{name}"] = getattr(head, name).astype(np.float32)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        data = buf.getvalue()
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "backbone": self.backbone, "pooling": self.pooling,
                "input_size": self.input_size, "layers": len(self.layers), "types": list(self.types),
                "temperature": self.temperature, "threshold": self.threshold, "sha256": sha256(data),
                "worn_heads": {g: {"labels": list(h.labels), "label_types": [sorted(t) for t in h.label_types],
                                   "temperature": h.temperature} for g, h in self.worn.items()}, **self.meta}
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
            worn = {g: WornHead(h["labels"], h["label_types"], *(arrays[f"worn_{g}_{n}"] for n in ("mean", "scale", "w", "b")),
                                float(h["temperature"])) for g, h in meta.get("worn_heads", {}).items()}
            known = {"format", "format_version", "backbone", "pooling", "input_size", "layers", "types", "temperature",
                     "threshold", "sha256", "worn_heads"}
            return cls(meta["backbone"], meta["pooling"], int(meta["input_size"]), tuple(meta["types"]), arrays["mean"],
                       arrays["scale"], layers, float(meta["temperature"]), float(meta["threshold"]),
                       {k: v for k, v in meta.items() if k not in known}, worn)
        except (KeyError, ValueError, OSError, TypeError, AttributeError) as exc:
            raise WeightsError(f"Type model weights {where} are damaged ({type(exc).__name__}: {exc}). {rebuild}",
                               code="typemodel_damaged") from exc
