"""Whether a tuned head serves, aspect by aspect: the raw and the tuned space measured as served, on what the
head never saw, and the head adopted only where it measures better (``query.space.ASPECTS``).

Kinds of query (``KINDS``), each searched through ``Index.search`` / the evaluation's served pipeline:

- ``catalog``: the catalog products ``tune`` held out (leave-one-out, ``quality.evaluate``): type P@5 and the
  colour vote's accuracy;
- ``real-items``: photos of single garments at home, the measure part (``realdata.real_items``): type P@5 of the
  results within the class's catalog types;
- ``worn``: garments people wear in street photos, the measure part (``realdata.street_photos``), each searched
  with its true box as a shopper would draw it: type P@5 within the garment's catalog types.

The real photos are measured where the shared data is found (``realdata.default_root``), at most ``photos`` of
each set (spread over the classes), seeded. The rule (``decide``): "type" (the space products are searched and
ranked in) is adopted when the tuned space's type P@5 is higher on the real sets (their mean; the catalog's
where there is none) and no kind loses more than ``TOLERANCE``; "colour" (the space of the colour vote) when
its accuracy on the held-out catalog products is higher; "vote" (the catalog's type probe joining the neighbours'
type vote, raw space otherwise) when the held-out catalog products' type P@5 is higher with it, no kind loses
more than ``TOLERANCE`` and "type" is not adopted (the probe is measured in the raw space only). The choice is made on the measure parts themselves: the figures recorded are those the
choice was made on.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..index.store import open_store
from ..models.head import SPLIT_ARTIFACT, read_split
from ..query import open_index
from ..query.space import ASPECTS

SPACE_ASPECTS = tuple(a for a in ASPECTS if a != "vote")  # what the tuned space itself serves
from . import realdata
from . import realscore as rs
from .evaluate import evaluate

KINDS = ("catalog", "real-items", "worn")
TOLERANCE = 0.01  # a kind may lose no more than this (type P@5) for the head to serve types
PHOTOS = 300  # real photos measured per set by default (each about a second of CPU, twice)


def available(root=None) -> Path | None:
    """The shared data folder when both real sets are in it, else None."""
    root = Path(root) if root is not None else realdata.default_root()
    return root if all((root / d).is_dir() for d in ("real-items", "street-ccp")) else None


def measure_index(index, *, catalog_ids=None, real_root=None, photos: int = PHOTOS) -> dict:
    """kind -> {"queries": n, "type": type P@5, ("colour": colour vote accuracy)} for an opened index, as served.
    ``catalog_ids``: the catalog products to query (leave-one-out; None: no catalog kind); ``real_root``: the
    shared data folder (None: no real kinds)."""
    out = {}
    if catalog_ids:
        report = evaluate(index, ks=(5,), latency_samples=0, duplicates=False, query_ids=catalog_ids,
                          include_trained=True)
        out["catalog"] = {"queries": report["queries"], "type": report["type"].get("precision@5"),
                          "colour": report["colour"].get("identify_accuracy")}
    if real_root is not None:
        items = _spread(realdata.real_items(real_root, part="measure"), photos)
        scores = [rs.type_p_at_k(rs.result_types(index.search(p.path, k=rs.K, include_out_of_stock=True).products),
                                 p.catalog_types) for p in items]
        out["real-items"] = {"queries": len(scores), "type": _mean(scores)}
        street = [p for p in realdata.street_photos(real_root, part="measure") if p.worn]
        scores, n = [], 0
        for photo in street:
            if n >= photos:
                break
            for garment in photo.worn:
                result = index.search(photo.path, k=rs.K, box=garment.box, include_out_of_stock=True)
                scores.append(rs.type_p_at_k(rs.result_types(result.products), garment.catalog_types))
                n += 1
        out["worn"] = {"queries": len(scores), "type": _mean(scores)}
    return out


def decide(raw: dict, tuned: dict, probed: dict | None = None) -> dict[str, bool]:
    """Which aspects the head serves, from the measurements of the raw space, the tuned one and the raw space with
    the catalog's type probe (see the module's rule)."""
    kinds = [k for k in KINDS if k in raw and k in tuned and raw[k].get("type") is not None and tuned[k].get("type") is not None]
    real = [k for k in kinds if k != "catalog"] or kinds
    gain = float(np.mean([tuned[k]["type"] - raw[k]["type"] for k in real])) if real else 0.0
    kept = all(tuned[k]["type"] >= raw[k]["type"] - TOLERANCE for k in kinds)
    colour = (raw.get("catalog") or {}).get("colour"), (tuned.get("catalog") or {}).get("colour")
    probe_kinds = [k for k in kinds if k in (probed or {}) and probed[k].get("type") is not None]
    probe_gain = "catalog" in probe_kinds and probed["catalog"]["type"] > raw["catalog"]["type"]
    space = bool(real) and gain > 0 and kept
    # The probe was measured in the raw space: it joins the vote only where the raw space names types.
    return {"type": space,
            "colour": bool(None not in colour and colour[1] > colour[0]),
            "vote": bool(not space and probe_gain
                         and all(probed[k]["type"] >= raw[k]["type"] - TOLERANCE for k in probe_kinds))}


def adopt(index_path, *, real_root="auto", photos: int = PHOTOS, settings=None, embedder=None) -> dict:
    """Measure the index's tuned head against the raw space (see the module) and record which aspects it serves
    in the manifest (``head.adopted``, ``head.measured``). ``real_root``: the shared data folder, "auto" to use it
    where it is found, None for the held-out catalog products alone. Returns the manifest's ``measured`` record."""
    started = time.perf_counter()
    if real_root == "auto":
        real_root = available()
    elif real_root is not None:
        real_root = available(real_root)
    raw_index = open_index(index_path, settings, embedder=embedder, aspects=())
    try:
        split = read_split(raw_index.store.read_artifact(SPLIT_ARTIFACT))
        if not raw_index.store.manifest.get("head") or split is None:
            from ..errors import InvalidArgumentError

            raise InvalidArgumentError(f"{index_path} has no tuned head with its held-out products: run stylelens tune first.",
                                       code="no_head")
        held = split["held_out"]
        raw = measure_index(raw_index, catalog_ids=held, real_root=real_root, photos=photos)
        tuned_index = open_index(index_path, settings, embedder=raw_index.embedder, aspects=SPACE_ASPECTS)
        try:
            tuned = measure_index(tuned_index, catalog_ids=held, real_root=real_root, photos=photos)
        finally:
            tuned_index.close()
        probed = None
        if raw_index.store.manifest["head"].get("type_probe"):
            probe_index = open_index(index_path, settings, embedder=raw_index.embedder, aspects=("vote",))
            try:
                probed = measure_index(probe_index, catalog_ids=held, real_root=real_root, photos=photos)
            finally:
                probe_index.close()
    finally:
        raw_index.close()
    adopted = decide(raw, tuned, probed)
    measured = {"kinds": {k: {"queries": raw[k]["queries"], "raw": {m: v for m, v in raw[k].items() if m != "queries"},
                              "tuned": {m: v for m, v in tuned[k].items() if m != "queries"},
                              **({"probe": {m: v for m, v in probed[k].items() if m != "queries"}} if probed else {})}
                          for k in raw},
                "real_data": real_root is not None, "photos": photos, "tolerance": TOLERANCE,
                "seconds": round(time.perf_counter() - started, 1)}
    store = open_store(index_path, writable=True, settings=settings)
    try:
        head = dict(store.manifest["head"], adopted=adopted, measured=measured)
        store.set_manifest(head=head)
    finally:
        store.close()
    return {"adopted": adopted, **measured}


def table(measured: dict) -> list[dict]:
    """Rows for the terminal: kind, aspect, queries, raw, tuned, change (and, with a type probe, raw + probe and
    its change, type P@5 only: the probe names types)."""
    rows = []
    for kind, m in measured["kinds"].items():
        for aspect in ("type", "colour"):
            if m["raw"].get(aspect) is None:
                continue
            raw, tuned = m["raw"][aspect], m["tuned"][aspect]
            row = {"kind": kind, "aspect": "type P@5" if aspect == "type" else "colour vote", "queries": m["queries"],
                   "raw": round(raw, 3), "tuned": round(tuned, 3), "change": f"{tuned - raw:+.3f}"}
            if "probe" in m and aspect == "type":
                probe = m["probe"]["type"]
                row.update({"raw + type probe": round(probe, 3), "probe change": f"{probe - raw:+.3f}"})
            rows.append(row)
    return rows


def _spread(photos: list, n: int) -> list:
    """At most ``n`` photos, taken in turn from each class (the measure part's order within a class)."""
    by_class: dict = {}
    for p in photos:
        by_class.setdefault(p.cls, []).append(p)
    out, depth = [], 0
    while len(out) < n and any(depth < len(v) for v in by_class.values()):
        out += [v[depth] for v in by_class.values() if depth < len(v)][: n - len(out)]
        depth += 1
    return out


def _mean(values) -> float | None:
    values = list(values)
    return round(float(np.mean(values)), 4) if values else None
