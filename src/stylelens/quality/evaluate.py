"""Evaluation on labelled data: does the index recommend the right kind of product?

Two ways to get queries:

- **leave-one-out**: every catalog product is a query against all the others. The index's own
  vectors are searched in blocks (one matrix product per block of 1,024 queries), so 40k products
  take a minute or two and no image is decoded;
- **held-out queries**: a folder of photos with a labels feed (any feed ``load_catalog`` reads),
  embedded with the index's embedder.

Only the neighbour pass is batched here; everything after it is the served pipeline itself
(``query.pipeline.rank_found``: filter → identify → personalise → rank → diversify, on the same candidate
list a served query gets), so what is measured is what is served. As there, catalog rows showing the
very same picture as the query (the space's same-picture cosine) are left out. Metrics, for articleType
(``type``), gender and colour:

- precision@k: share of the top k whose label equals the query's, the top k being what
  ``Index.search`` serves for k (nearest neighbours re-ranked by the rank stage's ``type_consistent``);
- mAP@k: mean over queries of AP@k = sum_{i<=k} precision@i * rel_i / min(k, R), R = relevant
  products in the index. Queries whose label no other product has (R = 0) are left out of both;
- ``type_nearest_neighbours``: articleType precision of the bare neighbours, before that re-ranking;
- identify accuracy: the similarity-weighted vote of ``identify_k`` neighbours (the identify stage,
  what ``Index.identify`` answers) equals the label.

Also: a per-type table (top 20 by support), the most confused type pairs, ANN recall@10 against
exact search when the index searches with ANN, query latency, and near-duplicate groups.

A tuned index is measured on products its head never saw: the products ``tune`` trained on (its split,
``models.head.SPLIT_ARTIFACT``) are left out as queries, in every space, so raw and tuned answer the same
queries (``include_trained`` keeps them, and the report says how many there are: ``report["head"]``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import ImageError, InvalidArgumentError, MissingExtraError
from ..models.head import SPLIT_ARTIFACT, read_split
from ..index.backend import exact_search, top_k
from ..query import pipeline
from ..query.diversity import group_pairs, near_duplicate_groups, near_duplicate_pairs, summarise_groups
from ..query.filters import Filters
from ..query.request import Photo, SearchRequest
from ..query.stages.embed import embed
from ..query.stages.neighbours import SELF_SLACK, Neighbours

LABELS = ("type", "gender", "colour")
TABLE_TYPES = 20
CONFUSED_PAIRS = 10
QUERY_CHUNK = 256  # query photos decoded and embedded at a time (bounded memory)


def parse_ks(text) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(x) for x in str(text).split(",") if x.strip()}))
    except ValueError:
        raise InvalidArgumentError(f"--k takes whole numbers separated by commas, like 5,10; got {text!r}.") from None
    if not ks or ks[0] < 1 or ks[-1] > 100:
        raise InvalidArgumentError(f"--k values must be between 1 and 100, got {text!r}.")
    return ks


def neighbours(vectors: np.ndarray, live: np.ndarray, queries: np.ndarray, k: int, *, self_rows: np.ndarray | None = None,
               batch: int = 1024, duplicate_cosine: float | None = None, same_picture: float = 0.9999):
    """Top-k catalog rows for each query, blockwise. Returns (scores, rows, same picture?, near-duplicate pairs
    or None): rows at or above the ``same_picture`` cosine stay in the list, flagged (the pipeline decides).

    ``self_rows`` (leave-one-out) gives the catalog row of each query, never found (as ``exclude_rows``);
    pairs are only collected then.
    """
    vectors = np.asarray(vectors, np.float32)
    n_q = len(queries)
    out_scores = np.empty((n_q, k), np.float32)
    out_rows = np.empty((n_q, k), np.int64)
    pairs = []
    for start in range(0, n_q, batch):
        block = np.asarray(queries[start:start + batch], np.float32) @ vectors.T
        block[:, ~live] = -np.inf
        if self_rows is not None and duplicate_cosine is not None:
            pairs.append(near_duplicate_pairs(block, self_rows[start:start + batch], duplicate_cosine))
        if self_rows is not None:
            block[np.arange(len(block)), self_rows[start:start + batch]] = -np.inf
        out_scores[start:start + batch], out_rows[start:start + batch] = top_k(block, k)
    found = np.concatenate(pairs) if pairs else None
    return out_scores, out_rows, out_scores >= same_picture, found


def label_metrics(rel: np.ndarray, n_relevant: np.ndarray, ks) -> dict:
    """precision@k and mAP@k from a (Q, K) relevance matrix and each query's count of relevant items."""
    use = n_relevant > 0
    rel = rel[use].astype(np.float64)
    n_relevant = n_relevant[use]
    out = {"queries": int(use.sum())}
    if not use.any():
        return out
    ranks = np.arange(1, rel.shape[1] + 1)
    precision_at_i = np.cumsum(rel, axis=1) / ranks
    for k in ks:
        out[f"precision@{k}"] = round(float(rel[:, :k].mean()), 4)
        ap = (precision_at_i[:, :k] * rel[:, :k]).sum(axis=1) / np.minimum(k, n_relevant)
        out[f"mAP@{k}"] = round(float(ap.mean()), 4)
    return out


def _codes_for(columns, column: str, values) -> np.ndarray:
    """Query label strings -> the index's codes; -1 unknown (not scored), -2 a value the index lacks."""
    lookup = {v.lower(): i for i, v in enumerate(columns.vocab[column])}
    return np.array([-1 if not v else lookup.get(str(v).lower(), -2) for v in values], np.int64)


def trained_on(store) -> set[str] | None:
    """The products the index's tuned head trained on; None without a head, or one that did not record them."""
    if not store.manifest.get("head"):
        return None
    split = read_split(store.read_artifact(SPLIT_ARTIFACT))
    return None if split is None else set(split["trained"])


def evaluate(index, queries=None, labels=None, *, ks=(5, 10), sample: int | None = None, seed: int = 0,
             latency_samples: int = 50, duplicates: bool = True, batch: int = 1024, query_ids=None,
             include_trained: bool = False) -> dict:
    """Evaluate an opened index: leave-one-out (no ``queries``; over ``query_ids`` only, when given) or on a folder
    of labelled photos. Queries the tuned head trained on are left out unless ``include_trained`` (then counted)."""
    ks = tuple(sorted(ks))
    started = time.perf_counter()
    snap = index.snapshot()  # one space and catalog view for the whole evaluation, as for one served query
    store, cols, space = snap.store, snap.columns, snap.space
    live = cols.live
    identify_k = index.settings.identify_k
    # The neighbour pass a served query of the largest k makes (its pool, the vote's neighbours, the slack).
    depth = max(SearchRequest(k=max(ks)).pool, identify_k) + SELF_SLACK
    calibration = space.calibration
    dup_cos, same = calibration.near_duplicate, calibration.same_picture
    report: dict = {"index": str(index.path), "backbone": store.manifest["embedder"]["backbone"],
                    "products": len(store), "ks": list(ks), "search": store.backend.name if space.name == "raw" else "exact",
                    "space": space.name, "runtime": index.embedder.runtime_name}
    all_vectors = space.matrix(cols)[:cols.n_rows]  # evaluation reads every vector once (from Milvus too), on purpose
    colour_space = snap.colour_space
    if colour_space is not None:
        report["colour_vote_space"] = colour_space.name
    if snap.type_probe is not None:
        report["type_probe"] = True  # tune's type probe joins the type vote (query.stages.identify)
    taught = trained_on(store)
    if store.manifest.get("head"):
        report["head"] = {"trained_on_known": taught is not None, "queries_trained_on": 0, "left_out": 0}
        taught = taught or set()

    if queries is None:
        report["mode"] = "leave-one-out"
        query_rows = np.flatnonzero(live)
        if query_ids is not None:
            wanted = {str(i) for i in query_ids}
            query_rows = np.array([r for r in query_rows if cols.ids[r] in wanted], np.int64)
        if taught:
            seen = np.isin(cols.ids[query_rows], list(taught))
            report["head"]["queries_trained_on" if include_trained else "left_out"] = int(seen.sum())
            if not include_trained:
                query_rows = query_rows[~seen]
        if sample is not None and sample < len(query_rows):
            query_rows = np.sort(np.random.default_rng(seed).choice(query_rows, sample, replace=False))
        qvecs = all_vectors[query_rows]
        qraw = None  # read per query, only where a same-picture match needs confirming (tuned space)
        qlabels = {c: cols.codes[c][query_rows].astype(np.int64) for c in LABELS}
        image_paths = [p["image_path"] for p in store.products(cols.ids[query_rows[:latency_samples]])]
        t0 = time.perf_counter()
        scores, rows, same_rows, pairs = neighbours(all_vectors, live, qvecs, depth, self_rows=query_rows, batch=batch,
                                                    duplicate_cosine=dup_cos if duplicates and sample is None
                                                    and query_ids is None and not taught else None,
                                                    same_picture=same)
        if colour_space is not None:
            colour_vectors = colour_space.matrix(cols)[:cols.n_rows]
            colour_near = neighbours(colour_vectors, live, colour_vectors[query_rows], identify_k + SELF_SLACK,
                                     self_rows=query_rows, batch=batch, same_picture=colour_space.calibration.same_picture)
        report["neighbour_seconds"] = round(time.perf_counter() - t0, 2)
    else:
        report["mode"] = "queries"
        query_rows = None
        qvecs, qraw, qrecords, skipped, qcolour = _embed_queries(index, snap, queries, labels)
        report["queries_skipped"] = skipped
        if taught:  # a query photo labelled with a product id the head trained on
            seen = np.array([str(r.get("id")) in taught for r in qrecords], bool)
            report["head"]["queries_trained_on" if include_trained else "left_out"] = int(seen.sum())
            if not include_trained and seen.any():
                keep = ~seen
                qvecs, qraw, qcolour = qvecs[keep], qraw[keep], None if qcolour is None else qcolour[keep]
                qrecords = [r for r, k in zip(qrecords, keep) if k]
        qlabels = {c: _codes_for(cols, c, [r.get(c) for r in qrecords]) for c in LABELS}
        image_paths = [r["_path"] for r in qrecords[:latency_samples]]
        t0 = time.perf_counter()
        scores, rows, same_rows, pairs = neighbours(all_vectors, live, qvecs, depth, batch=batch, same_picture=same)
        if colour_space is not None:
            colour_near = neighbours(colour_space.matrix(cols)[:cols.n_rows], live, qcolour, identify_k + SELF_SLACK,
                                     batch=batch, same_picture=colour_space.calibration.same_picture)
        report["neighbour_seconds"] = round(time.perf_counter() - t0, 2)
    report["queries"] = int(len(qvecs))
    if len(qvecs) == 0:
        if (report.get("head") or {}).get("left_out"):
            raise InvalidArgumentError("No queries to evaluate: the tuned head trained on every one of them. Evaluate on "
                                       "products or photos it never saw, or pass --include-trained to measure them anyway.")
        raise InvalidArgumentError("No queries to evaluate: the index is empty or no query image could be read.")

    # What Index.search serves for each k, and what it identifies: the pipeline after its neighbour pass.
    predicted = {c: np.full(len(qvecs), -1, np.int64) for c in LABELS}
    served = {k: np.full((len(qvecs), k), -1, np.int64) for k in ks}
    bare = np.full((len(qvecs), max(ks)), -1, np.int64)  # the nearest neighbours before ranking
    # Over every live product, out of stock too (as the relevant counts below): similar(include_out_of_stock=True).
    catalog = Filters(include_out_of_stock=True)
    allowed = catalog.mask(cols)
    probe_raw = None  # the queries' backbone vectors, for the catalog's type probe (as a served query passes them)
    if snap.type_probe is not None:
        probe_raw = qvecs if space.name == "raw" else (qraw if qraw is not None else store.vectors(query_rows, cols))

    def raw_of(i):
        return None if probe_raw is None else probe_raw[i]

    for i in range(len(qvecs)):
        found = rows[i][same_rows[i]]
        if len(found) and space.name != "raw":  # confirmed on the raw vectors, as the served neighbour pass does
            raw = qraw[i] if qraw is not None else store.vectors([query_rows[i]], cols)[0]
            found = space.same_picture(found, raw, cols)
        exclude = () if query_rows is None else (int(query_rows[i]),)
        for k in ks:
            request = SearchRequest(k=k, filters=catalog, exclude_rows=exclude)
            n = max(request.pool, identify_k) + SELF_SLACK
            near = Neighbours(scores[i, :n], rows[i, :n], found[np.isin(found, rows[i, :n])],
                              None if colour_space is None else Neighbours(colour_near[0][i], colour_near[1][i], found))
            ranked, ident = pipeline.rank_found(snap, near, qvecs[i], request, allowed, raw=raw_of(i))
            served[k][i, :min(k, len(ranked.rows))] = ranked.rows[:k]
        others = near.others()[1][:max(ks)]
        bare[i, :len(others)] = others
        for c in LABELS:
            value = getattr(ident, c)
            if value is not None:
                predicted[c][i] = cols.vocab[c].index(value)

    for c in LABELS:
        known = cols.codes[c][live]
        counts = np.bincount(known[known >= 0], minlength=len(cols.vocab[c]) + 1)  # +1: never empty
        q = qlabels[c]
        # Relevant items per query: products with the same label, minus the query itself in leave-one-out.
        n_rel = np.where(q >= 0, counts[np.clip(q, 0, None)] - (1 if report["mode"] == "leave-one-out" else 0), 0)
        report[c] = {}
        for k in ks:
            rel = np.where(served[k] >= 0, cols.codes[c][np.clip(served[k], 0, None)], -3) == q[:, None]
            report[c].update(label_metrics(rel, n_rel, (k,)))
        if c == "type":  # the bare nearest neighbours, to show what ranking adds
            rel = np.where(bare >= 0, cols.codes[c][np.clip(bare, 0, None)], -3) == q[:, None]
            report["type_nearest_neighbours"] = label_metrics(rel, n_rel, ks)
        known_q = q != -1
        report[c]["identify_accuracy"] = round(float((predicted[c][known_q] == q[known_q]).mean()), 4) if known_q.any() else None

    report["per_type"], report["confused_types"] = _type_tables(cols, qlabels["type"], predicted["type"], served, ks)
    if queries is not None:
        report["per_variant"] = _variant_table(cols, [(r.get("extra") or {}).get("variant") for r in qrecords],
                                               qlabels["type"], predicted["type"], served, ks)
    if report["search"] != "exact":
        report["ann_recall@10"] = ann_recall(index, all_vectors, qvecs, seed=seed)
    report["latency_ms"] = latency(index, image_paths)
    if duplicates:
        if pairs is not None:
            dup = summarise_groups(group_pairs(len(live), pairs), live)
            dup["threshold"] = dup_cos
        else:
            dup = near_duplicate_groups(all_vectors, live, dup_cos, batch=batch)
        report["near_duplicates"] = dup
    report["seconds"] = round(time.perf_counter() - started, 2)
    return report


def _type_tables(cols, truth: np.ndarray, predicted: np.ndarray, served: dict, ks) -> tuple[list, list]:
    vocab = cols.vocab["type"]
    known = truth >= 0
    support = Counter(truth[known].tolist())
    table = []
    for code, n in support.most_common(TABLE_TYPES):
        sel = truth == code
        row = {"type": vocab[code], "support": int(n)}
        for k in ks:
            nbr = np.where(served[k] >= 0, cols.codes["type"][np.clip(served[k], 0, None)], -3)
            row[f"precision@{k}"] = round(float((nbr[sel] == code).mean()), 4)
        row["identify_accuracy"] = round(float((predicted[sel] == code).mean()), 4)
        wrong = Counter(predicted[sel & (predicted != code) & (predicted >= 0)].tolist()).most_common(1)
        row["most_confused_with"] = vocab[wrong[0][0]] if wrong else None
        table.append(row)
    confused = Counter(zip(truth[known & (predicted >= 0) & (predicted != truth)].tolist(),
                           predicted[known & (predicted >= 0) & (predicted != truth)].tolist()))
    pairs = [{"type": vocab[t], "identified_as": vocab[p], "count": int(n), "share": round(n / support[t], 4)}
             for (t, p), n in confused.most_common(CONFUSED_PAIRS)]
    return table, pairs


def _variant_table(cols, variants, truth: np.ndarray, predicted: np.ndarray, served: dict, ks) -> list:
    """Type precision and identify accuracy per query kind (a ``variant`` column of the labels feed, as the
    shopper-photo benchmark writes: catalog, textured-70, small-offcentre...). Empty without that column."""
    if not any(variants):
        return []
    variants = np.array([v or "" for v in variants], dtype=object)
    table = []
    for variant in dict.fromkeys(variants.tolist()):
        sel = (variants == variant) & (truth >= 0)
        row = {"variant": variant or "(none)", "queries": int(sel.sum())}
        for k in ks:
            nbr = np.where(served[k] >= 0, cols.codes["type"][np.clip(served[k], 0, None)], -3)
            row[f"precision@{k}"] = round(float((nbr[sel] == truth[sel, None]).mean()), 4) if sel.any() else None
        row["identify_accuracy"] = round(float((predicted[sel] == truth[sel]).mean()), 4) if sel.any() else None
        table.append(row)
    return table


def _embed_queries(index, snap, folder, labels):
    """Query vectors as ``Index.search`` makes them (the pipeline's locate, cut out and embed stages): each
    photo's main item, in the space searched, embedded QUERY_CHUNK at a time; their backbone vectors; and their
    vectors in the colour vote's space where that is another one (else None)."""
    from ..intake.catalog import load_catalog

    settings = index.settings
    catalog = load_catalog(folder, labels)
    chunks, items, records, skipped = [], [], [], 0
    for pid, path in catalog.images.items():
        try:
            photo = Photo.decode(path, max_pixels=settings.max_pixels, target=index.embedder.preprocess.size)
            items.append(pipeline.cut_items(photo, localise=settings.localise, max_items=settings.max_items)[0])
        except ImageError:  # one unreadable photo is counted, not fatal
            skipped += 1
            continue
        records.append(dict(catalog.record(pid), _path=str(path)))
        if len(items) == QUERY_CHUNK:
            chunks.append(embed(items, index.embedder, snap.space, colour_space=snap.colour_space))
            items = []
    if items:
        chunks.append(embed(items, index.embedder, snap.space, colour_space=snap.colour_space))
    done = [item for chunk in chunks for item in chunk]
    colour = None
    if not done:
        empty = np.zeros((0, snap.space.dim), np.float32)
        if snap.colour_space is not None:
            colour = np.zeros((0, snap.colour_space.dim), np.float32)
        return empty, empty, records, skipped, colour
    if snap.colour_space is not None:
        colour = np.stack([i.colour_vector for i in done])
    return np.stack([i.vector for i in done]), np.stack([i.raw for i in done]), records, skipped, colour


def ann_recall(index, all_vectors: np.ndarray, queries: np.ndarray, n: int = 500, k: int = 10, seed: int = 0) -> float:
    """Share of the exact top k that the index's approximate search also returns."""
    rng = np.random.default_rng(seed)
    pick = queries[rng.choice(len(queries), min(n, len(queries)), replace=False)]
    live = index.store.columns.live
    _, approx = index.store.search(pick, k, live.copy())
    _, exact = exact_search(all_vectors, pick, k, live.copy())
    hits = [len(set(a[a >= 0]) & set(e[e >= 0])) / max(1, (e >= 0).sum()) for a, e in zip(approx, exact)]
    return round(float(np.mean(hits)), 4)


def latency(index, image_paths, k: int = 10) -> dict | None:
    """Per-query milliseconds: the whole Index.search (decode + embed + search), and search alone."""
    if not image_paths:
        return None
    index.search(image_paths[0], k)  # warm-up: first call pays for lazy loading
    snap, settings = index.snapshot(), index.settings
    vectors = [pipeline.photo_items(Photo.decode(path, max_pixels=settings.max_pixels, target=index.embedder.preprocess.size),
                                    snap, index.embedder, localise=False)[0].vector for path in image_paths]
    search_only = []
    for vector in vectors:
        t0 = time.perf_counter()
        index.search_vector(vector, k)
        search_only.append((time.perf_counter() - t0) * 1000)
    full = []
    for path in image_paths:
        t0 = time.perf_counter()
        index.search(path, k)
        full.append((time.perf_counter() - t0) * 1000)
    return {"queries": len(full), "p50": round(float(np.percentile(full, 50)), 2),
            "p95": round(float(np.percentile(full, 95)), 2), "mean": round(float(np.mean(full)), 2),
            "search_only_p50": round(float(np.percentile(search_only, 50)), 2),
            "search_only_p95": round(float(np.percentile(search_only, 95)), 2)}


def write_report(report: dict, out) -> tuple[Path, Path | None]:
    """eval.json, and eval.png (a chart of the headline and per-type numbers) where matplotlib is
    installed (extra 'eval'; without it the chart is left out, None)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "eval.json"
    json_path.write_text(json.dumps(report, indent=2))
    try:
        return json_path, write_chart(report, out / "eval.png")
    except MissingExtraError:
        return json_path, None


def write_chart(report: dict, path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingExtraError("matplotlib", "eval", "The evaluation chart") from exc
    ks = report["ks"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [1, 2.2]})
    names = [f"P@{k}" for k in ks] + [f"mAP@{k}" for k in ks] + ["identify"]
    keys = [f"precision@{k}" for k in ks] + [f"mAP@{k}" for k in ks] + ["identify_accuracy"]
    width = 0.8 / len(LABELS)
    for i, label in enumerate(LABELS):
        values = [report[label].get(key) or 0 for key in keys]
        left.bar(np.arange(len(keys)) + i * width, values, width, label=label)
    left.set_xticks(np.arange(len(keys)) + width * (len(LABELS) - 1) / 2, names, rotation=30)
    left.set_ylim(0, 1)
    left.set_title("overall")
    left.legend()
    table = report["per_type"]
    kmax = max(ks)
    x = np.arange(len(table))
    right.bar(x - 0.2, [r[f"precision@{kmax}"] for r in table], 0.4, label=f"precision@{kmax}")
    right.bar(x + 0.2, [r["identify_accuracy"] for r in table], 0.4, label="identify accuracy")
    right.set_xticks(x, [f"{r['type']} ({r['support']})" for r in table], rotation=60, ha="right")
    right.set_ylim(0, 1)
    right.set_title("articleType, top by support")
    right.legend()
    fig.suptitle(f"stylelens eval: {report['backbone']}, {report['products']:,} products, {report['mode']}, "
                 f"{report['queries']:,} queries")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
