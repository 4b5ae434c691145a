"""The catalog-taught head: a small MLP from the frozen backbone's vector (and the item's colour) to a
space where products of one type, colour and gender sit together.

Trained by ``stylelens tune`` (build.tune) on the shop's own labelled catalog; the backbone stays frozen
and the index keeps its raw vectors, so the head can be retrained or switched off at any time. Stored as
an ``.npz`` (arrays and JSON only, no pickle) in the index, recorded in the manifest. Its forward pass is
numpy: serving needs no training framework.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ..errors import IndexDamagedError

HEAD_ARTIFACT = "head.npz"
HEAD_FORMAT = 1
COLOURS_ARTIFACT = "head-colours.npz"  # product id -> colour descriptor, made by tune
SPLIT_ARTIFACT = "head-split.json"  # the products the head trained on and those held out to measure it
TYPE_PROBE_ARTIFACT = "type-probe.npz"  # the catalog's type probe (tune.typeprobe), trained beside the head


def read_split(data: bytes | None) -> dict | None:
    """{"trained": [ids], "held_out": [ids], "seed": n} of the head's split, None without one (tuned before it was kept)."""
    if not data:
        return None
    try:
        split = json.loads(data)
        return {"trained": list(split["trained"]), "held_out": list(split["held_out"]), "seed": split.get("seed")}
    except (ValueError, KeyError, TypeError):
        raise IndexDamagedError("The tuned head's record of the products it trained on is damaged. Run stylelens tune "
                                "again.") from None


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


@dataclass
class Head:
    """relu(z W1 + b1) W2 + b2, L2-normalised; z = (x - mean) @ whiten, x = [backbone vector, colour descriptor].

    ``whiten`` (in_dim, d) is PCA-whitening of each block fitted on the training data: frozen features
    differ in tiny amounts, and a few hundred whitened components train in a fraction of the time."""

    mean: np.ndarray
    whiten: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    colour_weight: float
    info: dict = field(default_factory=dict)  # what it was trained on, with which settings (the manifest's copy)

    @property
    def in_dim(self) -> int:
        return self.whiten.shape[0]

    @property
    def dim(self) -> int:
        return self.w2.shape[1]

    @property
    def uses_colour(self) -> bool:
        return self.colour_weight > 0

    def project(self, vectors: np.ndarray, colours: np.ndarray | None = None) -> np.ndarray:
        """(n, dim) unit vectors of the tuned space for raw backbone vectors (and their items' colours)."""
        x = np.asarray(vectors, np.float32)
        if self.uses_colour:
            if colours is None:
                raise ValueError("this head reads the item's colour descriptor beside its vector")
            x = np.concatenate([x, self.colour_weight * np.asarray(colours, np.float32)], axis=1)
        if x.shape[1] != self.in_dim:
            raise ValueError(f"the head takes {self.in_dim} inputs, got {x.shape[1]}")
        hidden = np.maximum(((x - self.mean) @ self.whiten) @ self.w1 + self.b1, 0)
        return unit(hidden @ self.w2 + self.b2)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, mean=self.mean, whiten=self.whiten, w1=self.w1, b1=self.b1, w2=self.w2, b2=self.b2,
                 meta=np.frombuffer(json.dumps({"format": HEAD_FORMAT, "colour_weight": self.colour_weight,
                                                "info": self.info}).encode(), np.uint8))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "the index") -> "Head":
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                head = cls(z["mean"], z["whiten"], z["w1"], z["b1"], z["w2"], z["b2"], float(meta["colour_weight"]), meta.get("info", {}))
        except Exception as exc:  # any damage: named, with what to do
            raise IndexDamagedError(f"The tuned head in {where} is damaged ({type(exc).__name__}). Run stylelens tune "
                                    f"again, or search without it (--no-tune).") from None
        if meta.get("format") != HEAD_FORMAT or head.whiten.shape[1] != head.w1.shape[0] or head.w1.shape[1] != head.b1.shape[0] or head.w1.shape[1] != head.w2.shape[0]:
            raise IndexDamagedError(f"The tuned head in {where} has an unknown layout. Run stylelens tune again.")
        return head


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


SETTING_OF = {"near_duplicate": "duplicate_cosine", "vote_temperature": "vote_temperature"}


@dataclass(frozen=True)
class Calibration:
    """Thresholds of one space (see build.calibrate for how each is measured)."""

    same_picture: float = 0.9999  # cosine at or above which a row is the query picture itself
    near_duplicate: float = 0.97  # cosine at or above which two products are near-duplicates
    vote_temperature: float = 0.02  # softmax temperature of the neighbours' vote (confidence calibration)
    score_scale: float = 1.0  # how far apart neighbours' cosines lie, relative to the raw space (scales type_boost)

    @classmethod
    def read(cls, manifest: dict, space: str, settings) -> "Calibration":
        """The manifest's calibration of ``space``. A setting changed from its default wins over it (the
        operator asked for that value); the settings' values stand where nothing was calibrated (older indexes)."""
        from ..settings import SETTINGS

        found = {k: float(v) for k, v in ((manifest.get("spaces") or {}).get(space) or {}).items()
                 if k in {f.name for f in fields(cls)}}
        for name, setting in SETTING_OF.items():
            value = getattr(settings, setting)
            if value != SETTINGS[setting].default or name not in found:
                found[name] = float(value)
        return cls(**found)

    def to_dict(self) -> dict:
        return {k: round(v, 6) for k, v in asdict(self).items()}


def read_colours(data: bytes | None) -> dict[str, np.ndarray]:
    if not data:
        return {}
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return dict(zip(z["ids"].tolist(), z["colours"].astype(np.float32)))


def write_colours(colours: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    ids = np.array(list(colours), dtype=str)
    np.savez(buf, ids=ids, colours=np.stack([colours[i] for i in colours]).astype(np.float16) if colours else
             np.zeros((0, 256), np.float16))
    return buf.getvalue()
