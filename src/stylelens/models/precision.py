"""Which numeric precision an embedder may run in, decided by the retrieval quality it keeps.

Pure functions over vectors (no runtime here): ``quality`` measures a candidate's vectors against the
fp32 vectors of the same probe images, ``keeps_quality`` is the one rule, ``choose`` picks the fastest
candidate that keeps it. The bar follows MLPerf's for reduced precision (>= 99 % of the fp32 accuracy):

* labelled probe (real weights and a catalog with types): articleType P@5 and identify accuracy
  (leave-one-out over the probe) each >= 99 % of fp32's;
* always: recall@10 of fp32's top-5 >= 0.95 and cosine to the fp32 vector >= 0.99 for every image.

Identical top-5 lists are not asked for: among near-ties (random weights make every vector alike) a
rounding step reorders neighbours without making the answer worse.
"""

from __future__ import annotations

import numpy as np

PRECISIONS = ("auto", "fp32", "bf16", "int8")
ALIASES = {"f32": "fp32"}  # the name earlier versions used
CANDIDATES = ("fp32", "bf16", "int8")  # fp32 is the reference and always keeps its own quality

MIN_RELATIVE = 0.99  # of fp32's P@5 and identify accuracy
MIN_RECALL = 0.95  # recall@10 of fp32's top-5
MIN_COSINE = 0.99  # every image's cosine to its fp32 vector
MIN_PROBE = 64  # fewer probe images cannot show quality kept (36 labelled images gave P@5 1.0 in every precision)
K, RECALL_K, IDENTIFY_K = 5, 10, 10


def canonical(precision: str) -> str:
    return ALIASES.get(precision, precision)


def _neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """Each probe image's k nearest other probe images (leave-one-out), best first."""
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    k = min(k, len(vectors) - 1)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k], scores


def _label_quality(vectors: np.ndarray, labels: np.ndarray, temperature: float) -> tuple[float, float]:
    """(articleType P@5, identify accuracy) leave-one-out over the labelled probe images.

    Identify: the similarity-weighted vote of the IDENTIFY_K nearest neighbours (softmax at
    ``temperature``), the same formula as query.identify.vote, which this layer cannot import."""
    order, scores = _neighbours(vectors, IDENTIFY_K)
    known = labels >= 0
    hits = labels[order[:, :K]] == labels[:, None]
    p_at_5 = float(hits[known].mean()) if known.any() else 0.0
    correct = []
    for i in np.flatnonzero(known):
        rows = order[i]
        sims = scores[i, rows].astype(np.float64)
        weights = np.exp((sims - sims.max()) / temperature)
        codes = labels[rows]
        keep = codes >= 0
        if not keep.any():
            correct.append(False)
            continue
        tally = np.bincount(codes[keep], weights=weights[keep], minlength=int(labels.max()) + 1)
        correct.append(int(np.argmax(tally)) == labels[i])
    return p_at_5, float(np.mean(correct)) if correct else 0.0


def quality(vectors: np.ndarray, reference: np.ndarray, labels=None, temperature: float = 0.02) -> dict:
    """How well ``vectors`` (a candidate precision) keep ``reference`` (fp32) on the same probe images.

    ``labels``: one label per image (None or "" for unknown) or None. Returns cosine_min/mean,
    recall_at_10 and, with labels, p_at_5 and identify (absolute: compare them to fp32's own)."""
    vectors = np.asarray(vectors, np.float32)
    reference = np.asarray(reference, np.float32)
    cos = np.sum(vectors * reference, axis=1)
    ref_top, _ = _neighbours(reference, K)
    cand_top, _ = _neighbours(vectors, RECALL_K)
    recall = np.mean([len(set(a) & set(b)) / max(1, len(a)) for a, b in zip(ref_top, cand_top)])
    out = {"images": len(vectors), "cosine_min": round(float(cos.min()), 6), "cosine_mean": round(float(cos.mean()), 6),
           "recall_at_10": round(float(recall), 4)}
    if labels is not None:
        names = sorted({str(x) for x in labels if x})
        codes = np.array([names.index(str(x)) if x else -1 for x in labels])
        out["p_at_5"], out["identify"] = (round(v, 4) for v in _label_quality(vectors, codes, temperature))
    return out


def keeps_quality(candidate: dict, fp32: dict) -> tuple[bool, str]:
    """The rule: (passes, why). ``candidate`` and ``fp32`` are ``quality`` results; the labelled
    measures count only when both have them."""
    if candidate.get("images", MIN_PROBE) < MIN_PROBE:
        return False, f"a probe of {candidate['images']} images is too small to show it (needs {MIN_PROBE})"
    if candidate.get("cosine_min", 0.0) < MIN_COSINE:
        return False, f"cosine min {candidate.get('cosine_min')} < {MIN_COSINE}"
    if candidate.get("recall_at_10", 0.0) < MIN_RECALL:
        return False, f"recall@10 of fp32's top-5 {candidate.get('recall_at_10')} < {MIN_RECALL}"
    for name in ("p_at_5", "identify"):
        if name in candidate and name in fp32 and candidate[name] < MIN_RELATIVE * fp32[name]:
            return False, f"{name} {candidate[name]} < {MIN_RELATIVE:.0%} of fp32's {fp32[name]}"
    return True, "keeps fp32's quality"


def choose(measured: dict[str, dict]) -> str:
    """The fastest precision (``img_s``) whose ``passes`` is true; fp32 when none is measured."""
    passing = [(m.get("img_s") or 0.0, name) for name, m in measured.items() if m.get("passes")]
    return max(passing)[1] if passing else "fp32"


def catalog_probe(catalog, probe: int = 300, calibration: int = 200) -> tuple[list, list | None, list]:
    """Images to decide ``auto`` on: (probe paths, their product types or None, calibration paths), spread
    evenly over the catalog by id and disjoint, so int8 is never judged on the images it was fitted to."""
    ids = sorted(catalog.images)
    spread = ids[:: max(1, len(ids) // (probe + calibration))][: probe + calibration]
    if len(spread) < probe + calibration:  # a small catalog: all of it is the probe, and calibrates int8 too
        probe_ids, calib_ids = ids[:probe], ids[:calibration]
    else:
        take = set(np.linspace(0, len(spread) - 1, probe).round().astype(int).tolist())
        probe_ids = [pid for i, pid in enumerate(spread) if i in take]
        calib_ids = [pid for i, pid in enumerate(spread) if i not in take]
    labels = [str(catalog.record(pid).get("type") or "") for pid in probe_ids]
    return ([catalog.images[pid] for pid in probe_ids], labels if any(labels) else None,
            [catalog.images[pid] for pid in calib_ids])


def describe(record: dict) -> str:
    """One line for ``stylelens info``: the precision in use and, when ``auto`` chose it, what each
    candidate measured."""
    chosen = record.get("chosen") or "auto (decided on first use)"
    if not record.get("candidates"):
        return f"{chosen} ({'forced' if record.get('asked') not in (None, 'auto') else record.get('why', 'auto')})"
    parts = []
    for name, m in record["candidates"].items():
        if "img_s" not in m:
            parts.append(f"{name} {m.get('why', '')}")
            continue
        labelled = "".join(f" {key} {m[key]:.3f}" for key in ("p_at_5", "identify") if key in m)
        parts.append(f"{name} {m['img_s']:.0f} img/s{labelled} recall@10 {m['recall_at_10']:.3f} cos min {m['cosine_min']:.4f}"
                     + ("" if m.get("passes") else " (fails)"))
    probe = record.get("probe") or {}
    return (f"{chosen} (auto on {probe.get('images')} {probe.get('source')} images"
            f"{', labelled' if probe.get('labelled') else ''}, {record.get('cpu')}): " + "; ".join(parts))
