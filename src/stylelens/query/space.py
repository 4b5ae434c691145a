"""The space a query searches: the backbone's raw vectors, or the tuned head's projection of them.

Both answer ``search``, ``vectors`` and ``matrix`` on a catalog view, and carry the thresholds
calibrated for them (``Calibration``): a cosine means different things in different spaces, so the
same-picture, near-duplicate and vote-confidence settings are measured per space when it is made
(``build.calibrate``) and read from the manifest. The index keeps raw vectors only; the tuned space
projects them in memory per catalog view (new rows projected as they arrive), so switching the head
off, or retraining it, never needs a rebuild.

A head is adopted per aspect (``ASPECTS``), only where ``stylelens tune`` measured it better (``tune.measure``):
"type" is the space products are searched and ranked in (and the type and gender vote), "colour" the space
whose neighbours vote the item's colour. The two may differ: the colour vote then makes its own small pass.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace

import numpy as np

from ..item.colour import DIM as COLOUR_DIM
from ..item.colour import colour_descriptor, colour_descriptors
from ..errors import ImageError, WeightsError
from ..index.backend import all_scores, exact_search
from ..models.head import COLOURS_ARTIFACT, HEAD_ARTIFACT, TYPE_PROBE_ARTIFACT, Calibration, Head, read_colours

log = logging.getLogger(__name__)

PROJECT_CHUNK = 32_768  # raw rows projected per step (256 MB of 2048-d float32)
# What a tuned head may be adopted for (see the module's docstring); "vote": the catalog's type probe, trained with
# the head (``tune.typeprobe``), joins the neighbours' type vote.
ASPECTS = ("type", "colour", "vote")

@dataclass(frozen=True)
class Snapshot:
    """What one call sees from start to end: the space searched and one view of the catalog (``columns``).

    Taken once per call (``Index.snapshot``) and handed to every stage: a ``tune`` that lands mid-query (a new
    head, even another dimension) is seen by the next call, never by half of this one; rows a writer commits
    meanwhile wait for the next call too. ``store`` reads what the view names (records, hashes)."""

    space: "RawSpace"
    columns: object
    store: object
    settings: object
    colour_space: "RawSpace | None" = None  # the colour vote's space where it is not ``space`` (see ASPECTS)
    type_probe: object = None  # the catalog's type probe (a models.typemodel.TypeModel) where adopted, else None

    def with_columns(self, columns) -> "Snapshot":
        """The same space on a newer catalog view (after a compaction replaced the vectors file)."""
        return replace(self, columns=columns)


class RawSpace:
    """The backbone's vectors as the index keeps them (exact, FAISS or Milvus behind the store)."""

    name = "raw"

    def __init__(self, store, calibration: Calibration):
        self.store = store
        self.calibration = calibration

    @property
    def dim(self) -> int:
        return self.store.dim

    def query(self, vectors: np.ndarray, images=None, colour: str | None = None) -> np.ndarray:
        """Query vectors of this space from raw backbone vectors (and the images they came from). ``colour``
        (a colour filter, comma-separated values) asks for the same item in that colour where the space knows colour."""
        return vectors

    def search(self, queries, k: int, mask=None, filters=None, columns=None):
        return self.store.search(queries, k, mask, filters=filters, columns=columns)

    def vectors(self, rows, columns=None) -> np.ndarray:
        return self.store.vectors(rows, columns)

    def scores(self, queries, columns=None, rows=None) -> np.ndarray | None:
        """(Q, n_rows) every row's cosine to each query in one pass (``rows``: only those rows, (Q, len(rows))),
        None where the backend searches on its own."""
        return self.store.scores(queries, columns, rows)

    def matrix(self, columns=None) -> np.ndarray:
        """Every row's vector of the view (evaluation reads them all on purpose)."""
        return self.store.all_vectors()

    def same_picture(self, rows: np.ndarray, raw: np.ndarray | None, columns=None) -> np.ndarray:
        """Of the rows at or above this space's same-picture cosine, those that are the query picture itself."""
        return rows


class TunedSpace(RawSpace):
    """The head's projection of the raw vectors (and each product's colour), searched exactly in memory."""

    name = "tuned"

    def __init__(self, store, calibration: Calibration, head: Head, colours: dict[str, np.ndarray]):
        super().__init__(store, calibration)
        self.head = head
        self.colours = colours  # product id -> colour descriptor, made by tune; new products get theirs here
        self._lock = threading.Lock()
        self._generation = None
        self._matrix = np.zeros((0, head.dim), np.float32)
        self._label_colours: dict = {}

    @property
    def dim(self) -> int:
        return self.head.dim

    def query(self, vectors: np.ndarray, images=None, colour: str | None = None) -> np.ndarray:
        colours = None
        if self.head.uses_colour:
            wanted = self._label_colour(colour) if colour else None
            if wanted is not None:  # "this style in red": the item's shape with the catalog's red
                colours = np.tile(wanted, (len(vectors), 1))
            elif images is not None:
                colours = colour_descriptors(images)
            else:
                colours = np.zeros((len(vectors), COLOUR_DIM), np.float32)
        return self.head.project(vectors, colours)

    def _label_colour(self, colour: str) -> np.ndarray | None:
        """The mean descriptor of the catalog's products labelled with these colours (None: none known)."""
        columns = self.store.columns
        codes = [columns.code("colour", value) for value in str(colour).split(",")]
        codes = sorted(c for c in codes if c is not None)
        key = (columns.generation, columns.n_rows, tuple(codes))
        if key not in self._label_colours:
            rows = np.flatnonzero(np.isin(columns.codes["colour"], codes) & columns.live) if codes else []
            known = [self.colours[pid] for pid in columns.ids[rows] if pid in self.colours]
            self._label_colours[key] = np.mean(known, axis=0).astype(np.float32) if known else None
        return self._label_colours[key]

    def matrix(self, columns=None) -> np.ndarray:
        """(n_rows, dim) of the view: rows projected once; a compaction (new generation) projects afresh."""
        columns = columns or self.store.columns
        matrix = self._matrix
        if self._generation == columns.generation and len(matrix) >= columns.n_rows:
            return matrix
        with self._lock:
            if self._generation != columns.generation:
                self._matrix, self._generation = np.zeros((0, self.head.dim), np.float32), columns.generation
            done = len(self._matrix)
            if done < columns.n_rows:
                # In chunks: the raw rows read at once stay bounded (a million 2048-d rows would be 8 GB).
                parts = [self._matrix]
                for start in range(done, columns.n_rows, PROJECT_CHUNK):
                    rows = np.arange(start, min(start + PROJECT_CHUNK, columns.n_rows))
                    colours = self._colours(columns.ids[rows]) if self.head.uses_colour else None
                    parts.append(self.head.project(self.store.vectors(rows, columns), colours))
                self._matrix = np.concatenate(parts)
            return self._matrix

    def search(self, queries, k: int, mask=None, filters=None, columns=None):
        columns = columns or self.store.columns
        matrix = self.matrix(columns)[:columns.n_rows]
        return exact_search(matrix, queries, k, columns.live if mask is None else columns.fit(mask))

    def vectors(self, rows, columns=None) -> np.ndarray:
        return self.matrix(columns)[np.asarray(rows, dtype=np.int64)]

    def scores(self, queries, columns=None, rows=None) -> np.ndarray:
        columns = columns or self.store.columns
        return all_scores(self.matrix(columns)[:columns.n_rows], queries, rows)

    def same_picture(self, rows: np.ndarray, raw: np.ndarray | None, columns=None) -> np.ndarray:
        """Confirmed on the raw vectors: the head pulls products of one type and colour together on purpose,
        so a tuned cosine near 1 alone could be another product that merely looks alike."""
        if raw is None or not len(rows):
            return rows
        return rows[self.store.vectors(rows, columns) @ raw >= Calibration().same_picture]

    def _colours(self, ids) -> np.ndarray:
        """Descriptors of these products: tune's, else made now from the product's image (added after tuning)."""
        out = np.zeros((len(ids), COLOUR_DIM), np.float32)
        missing = [i for i, pid in enumerate(ids) if pid not in self.colours]
        for i, pid in enumerate(ids):
            if pid in self.colours:
                out[i] = self.colours[pid]
        if missing:
            records = {p["id"]: p for p in self.store.products([ids[i] for i in missing])}
            for i in missing:
                path = (records.get(ids[i]) or {}).get("image_path")
                try:
                    out[i] = self.colours[ids[i]] = colour_descriptor(path)
                except (ImageError, OSError, TypeError, ValueError):
                    # The vector is still searchable; without its colour it ranks on shape alone.
                    log.warning("no colour for product %s: its image %s cannot be read", ids[i], path)
        return out


def adopted_aspects(manifest: dict) -> tuple[str, ...]:
    """The aspects ``tune`` adopted the head for; a head tuned before adoption was measured: every aspect."""
    head = manifest.get("head") or {}
    adopted = head.get("adopted")
    return tuple(ASPECTS) if adopted is None else tuple(a for a in ASPECTS if adopted.get(a))


def open_spaces(store, settings, use_head: bool = True, aspects=None) -> tuple[RawSpace, RawSpace | None, object]:
    """(the space searched, the colour vote's space or None where it is the same, the catalog's type probe or None).
    The head serves the aspects it was adopted for (``adopted_aspects``; ``aspects`` names them instead), and none
    without ``use_head``."""
    manifest = store.manifest
    head_info = manifest.get("head")
    raw = RawSpace(store, Calibration.read(manifest, "raw", settings))
    wanted = set(adopted_aspects(manifest) if aspects is None else aspects)
    unknown = wanted - set(ASPECTS)
    if unknown:
        raise ValueError(f"unknown aspects {sorted(unknown)}; the head may serve {', '.join(ASPECTS)}")
    if not (use_head and head_info and wanted):
        return raw, None, None
    probe = _type_probe(store, head_info) if "vote" in wanted else None
    if not wanted & {"type", "colour"}:
        return raw, None, probe
    data = store.read_artifact(head_info.get("artifact", HEAD_ARTIFACT))
    if data is None:
        log.warning("the index names a tuned head but its file is missing; searching the raw space (run stylelens tune)")
        return raw, None, probe
    tuned = TunedSpace(store, Calibration.read(manifest, "tuned", settings), Head.from_bytes(data, str(store.path)),
                       read_colours(store.read_artifact(COLOURS_ARTIFACT)))
    main = tuned if "type" in wanted else raw
    colour = tuned if "colour" in wanted else raw
    return main, None if colour is main else colour, probe


def _type_probe(store, head_info: dict):
    """The type probe tune trained beside the head (``tune.typeprobe``), None where it made none."""
    from ..models.typemodel import TypeModel

    record = head_info.get("type_probe")
    if not record:
        return None
    data = store.read_artifact(record.get("artifact", TYPE_PROBE_ARTIFACT))
    if data is None:
        log.warning("the index names a type probe but its file is missing; types are named by the vote (run stylelens tune)")
        return None
    try:
        return TypeModel.from_bytes(data, {k: v for k, v in record.items() if k != "artifact"}, f"in {store.path}",
                                    "Run stylelens tune again.")
    except WeightsError as exc:  # search still works, its types named by the vote alone
        log.warning("%s Types are named by the vote meanwhile.", exc)
        return None

