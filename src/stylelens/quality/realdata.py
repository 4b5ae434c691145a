"""The real photos that measure stylelens, and the one seeded split of each into a part to train on and a
part only measured on.

- ``real-items``: photos of single garments at home (flat, on hangers), in classes mapped to catalog types.
- ``street-ccp``: photos of people wearing outfits, with a pixel mask of every garment (labels mapped to
  groups and catalog types).

Everything that trains or tunes on these photos (the type model, the garment parser) takes the ``train``
part; every figure reported comes from the ``measure`` part. The split is by photo, stratified by class for
real-items, fixed by ``SEED``: a model trained with another split would be measured on its own training photos.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

SEED = 0
TRAIN_SHARE = 0.6  # of each class (real-items) or of all photos (street-ccp)
PARTS = ("train", "measure", "all")
GROUPS = ("top", "outerwear", "dress", "bottom", "shoes", "bag")  # what a shopper buys off a worn outfit
MIN_AREA_SHARE = 0.01  # smaller garments (a glimpse of a sock) are not counted as worn items


def default_root() -> Path:
    """``../shared/data`` beside the repository (where this checkout keeps the shared data)."""
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _in_train(key: str, seed: int) -> float:
    """A stable number in [0, 1) per photo: the same split on every machine and Python version."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _pick(keys: list[str], part: str, seed: int) -> set[str]:
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    if part == "all":
        return set(keys)
    ranked = sorted(keys, key=lambda k: _in_train(k, seed))
    n_train = round(len(ranked) * TRAIN_SHARE)
    return set(ranked[:n_train] if part == "train" else ranked[n_train:])


@dataclass(frozen=True)
class ItemPhoto:
    path: Path
    cls: str
    catalog_types: frozenset[str]


def real_items(root: Path | None = None, part: str = "measure", seed: int = SEED) -> list[ItemPhoto]:
    """Photos of single garments at home: the ``part`` of each class, in a stable order."""
    base = Path(root or default_root()) / "real-items"
    with open(base / "classes.csv", newline="") as fh:
        classes = {row["class"]: frozenset(row["catalog_types"].split("|")) for row in csv.DictReader(fh)}
    out = []
    for cls, types in sorted(classes.items()):
        paths = sorted((base / "photos" / cls).glob("*.jpg"))
        keep = _pick([p.name for p in paths], part, seed)
        out += [ItemPhoto(p, cls, types) for p in paths if p.name in keep]
    return out


@dataclass(frozen=True)
class WornItem:
    label: int
    name: str
    group: str
    area_share: float
    box: tuple[int, int, int, int]  # x, y, w, h of all the label's pixels (a pair of shoes is one box)
    catalog_types: frozenset[str]


@dataclass(frozen=True)
class StreetPhoto:
    photo: str
    path: Path
    mask_path: Path
    items: tuple[WornItem, ...] = field(default=())

    @property
    def worn(self) -> tuple[WornItem, ...]:
        """The garments a shopper would buy: in a shopping group, large enough to be seen."""
        return tuple(i for i in self.items if i.group in GROUPS and i.area_share >= MIN_AREA_SHARE and i.catalog_types)


def street_photos(root: Path | None = None, part: str = "measure", seed: int = SEED) -> list[StreetPhoto]:
    """Photos of people in outfits with their labelled items: the ``part`` of the photos, in id order."""
    base = Path(root or default_root()) / "street-ccp"
    with open(base / "labels.csv", newline="") as fh:
        types = {int(r["index"]): frozenset(t for t in r["catalog_types"].split("|") if t) for r in csv.DictReader(fh)}
    items: dict[str, list[WornItem]] = {}
    with open(base / "items.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            box = tuple(int(r[k]) for k in ("box_x", "box_y", "box_w", "box_h"))
            items.setdefault(r["photo"], []).append(WornItem(int(r["label"]), r["name"], r["group"],
                                                             float(r["area_share"]), box, types[int(r["label"])]))
    photos = sorted(p.stem for p in (base / "photos").glob("*.jpg"))
    keep = _pick(photos, part, seed)
    return [StreetPhoto(p, base / "photos" / f"{p}.jpg", base / "masks" / f"{p}.png", tuple(items.get(p, ())))
            for p in photos if p in keep]


def label_groups(root: Path | None = None) -> dict[int, str]:
    """Mask label index -> its group (top, outerwear, dress, bottom, shoes, bag, accessory, body, background)."""
    base = Path(root or default_root()) / "street-ccp"
    with open(base / "labels.csv", newline="") as fh:
        return {int(r["index"]): r["group"] for r in csv.DictReader(fh)}
