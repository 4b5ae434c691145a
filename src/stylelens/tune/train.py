"""``stylelens tune``: the shop's own labelled catalog teaches a small head on the frozen backbone.

The index's raw vectors are read once; each product's colour descriptor is made from its image; and
``tune_views`` shopper-style photos are composed from the catalog (the item cut from its white
backdrop onto generated backgrounds, scaled, tilted, beside other products: ``composite``), found
by the query path's own localiser and embedded, so the space learns what a shopper's photo looks
like. A two-layer MLP is trained with one proxy (normalised-softmax) loss per label column
(type, gender, colour, category, sub-category and any ``extra_labels``); its output, L2-normalised,
is the tuned space. The space's thresholds are calibrated (``calibrate``), the head and the colour
descriptors are stored with the index and the manifest records what they were trained on.

A seeded share of the products is held out (``held_out``): the head never trains on them, nor do the shopper
views show them, so ``quality.tuning`` can measure the head against the raw space on products it never saw, and
``stylelens eval`` measures there by default. The head is written adopted for nothing (the raw space serves); the
measurement decides which aspects it serves (``query.space.ASPECTS``).
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..intake.catalog import canonical_column
from ..item.colour import DIM as COLOUR_DIM
from ..item.colour import colour_descriptor
from ..errors import CatalogError, ImageError, InvalidArgumentError
from ..index.store import open_store
from ..models import Embedder
from ..models.head import (COLOURS_ARTIFACT, HEAD_ARTIFACT, SPLIT_ARTIFACT, TYPE_PROBE_ARTIFACT, Head, read_split, sha256,
                           write_colours)
from ..settings import Settings, settings_or_default
from ..build.calibrate import calibrate_raw, calibrate_tuned
from ..build.plan import progress_bar
from .typeprobe import fit_type_probe

LABELS = ("type", "gender", "colour", "category", "subcategory")
LOSS_WEIGHTS = {"type": 1.0, "gender": 0.5, "colour": 1.0, "category": 0.3, "subcategory": 0.5}
EXTRA_WEIGHT = 0.5
VIEW_VARIANTS = ("textured-70", "textured-70-degraded", "small-offcentre", "distractors")
HIDDEN, SCALE, BATCH, LR, EPOCHS, MIN_STEPS, MAX_STEPS = 512, 20.0, 256, 1e-2, 40, 300, 3000
RAW_COMPONENTS, COLOUR_COMPONENTS = 192, 64  # whitened PCA components of the backbone vector and of the colour
MIN_LABELLED = 20
HELD_OUT_SHARE, HELD_OUT_MIN, HELD_OUT_MAX = 0.1, 5, 2000  # products the head never sees, to measure it on


@dataclass
class TuneReport:
    products: int = 0  # trained on
    held_out: int = 0  # never seen by the head: where it is measured
    views: int = 0
    labels: dict = field(default_factory=dict)  # column -> number of values learnt
    skipped_images: int = 0
    seconds: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def labels_hash(records: list[dict], columns) -> str:
    """What the head learnt from: ids and their labels. A change means the head is stale (``info``)."""
    h = hashlib.sha256()
    for r in sorted(records, key=lambda r: r["id"]):
        h.update(json.dumps([r["id"], *[label_of(r, c) for c in columns]]).encode())
    return h.hexdigest()


def held_out(ids, seed: int = 0) -> set[str]:
    """The products a head tuned with ``seed`` never trains on: a stable share of the ids (by hash, so the same
    products on every machine), at least ``HELD_OUT_MIN`` and at most ``HELD_OUT_MAX``."""
    ids = [str(i) for i in ids]
    n = min(HELD_OUT_MAX, max(HELD_OUT_MIN, round(HELD_OUT_SHARE * len(ids))))
    rank = sorted(ids, key=lambda pid: hashlib.sha256(f"{seed}:{pid}".encode()).digest())
    return set(rank[:n])


def label_of(record: dict, column: str):
    value = record.get(column)
    if value is None:
        value = (record.get("extra") or {}).get(column)
    return None if value in (None, "") else str(value)


def tune_index(index_path, *, labels=None, extra_labels=(), settings: Settings | None = None, seed: int = 0,
               **overrides) -> TuneReport:
    """Train the head of the index at ``index_path`` on its own catalog (labels from ``labels``, a feed,
    where given: they replace the catalog's), calibrate it and store it with the index."""
    settings = settings_or_default(settings).replace(**overrides)
    if settings.tune_views < 0:
        raise InvalidArgumentError(f"tune_views must be 0 or more, got {settings.tune_views}.", code="bad_option")
    if not 8 <= settings.tune_dim <= 2048:
        raise InvalidArgumentError(f"tune_dim must be between 8 and 2048, got {settings.tune_dim}.", code="bad_option")
    report = TuneReport()
    started = time.perf_counter()
    store = open_store(index_path, writable=True, settings=settings)
    try:
        cols = store.columns
        live_rows = np.flatnonzero(cols.live)
        if len(live_rows) < MIN_LABELLED:
            raise InvalidArgumentError(f"The index holds {len(live_rows)} products; tuning needs at least {MIN_LABELLED}. "
                                       "Index more of the catalog first.", code="too_few_products")
        unseen = held_out(cols.ids[live_rows], seed)
        rows = np.array([r for r in live_rows if cols.ids[r] not in unseen], np.int64)
        records = {p["id"]: p for p in store.products(cols.ids[live_rows])}
        if labels is not None:
            records = _with_feed_labels(records, labels)
        ordered = [records[pid] for pid in cols.ids[rows]]
        extra_labels = [canonical_column(c) for c in extra_labels]
        columns = list(dict.fromkeys((*LABELS, *extra_labels)))
        targets = _targets(ordered, columns)
        if not targets:
            raise InvalidArgumentError("No label column has two or more values with products behind them: tuning has "
                                       "nothing to learn. Give a feed with articleType, colour... (--labels FEED).",
                                       code="no_labels")
        _check_named_labels(ordered, extra_labels, targets)
        report.products, report.labels = len(rows), {c: len(v) for c, (v, _) in targets.items()}
        report.held_out = len(unseen)
        raw = store.all_vectors()
        # Every live product's colour (the held-out ones are searched in the tuned space too); labels are not read.
        others = [records[pid] for pid in cols.ids[live_rows] if pid in unseen]
        colours, report.skipped_images = _colours(ordered + others, settings)
        other_colours, colours = colours[len(ordered):], colours[:len(ordered)]
        report.seconds["colours"] = round(time.perf_counter() - started, 1)
        t0 = time.perf_counter()
        view_x, view_c, view_of = _views(store, ordered, settings, seed)
        report.views = len(view_x)
        report.seconds["views"] = round(time.perf_counter() - t0, 1)
        x = np.concatenate([raw[rows], view_x]) if len(view_x) else raw[rows]
        c = np.concatenate([colours, view_c]) if len(view_x) else colours
        y = {col: np.concatenate([codes, codes[view_of]]) for col, (_, codes) in targets.items()}
        t0 = time.perf_counter()
        head = _train(x, c, y, settings, seed)
        report.seconds["train"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        probe = None
        if "type" in targets:  # on the catalog's own shots (no composed views): it names catalog-like photos
            probe = fit_type_probe(raw[rows], targets["type"][1], targets["type"][0], store.manifest["embedder"], seed)
        report.seconds["type_probe"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        colour_of = dict(zip([r["id"] for r in ordered + others], np.concatenate([colours, other_colours])))
        all_colours = np.zeros((cols.n_rows, COLOUR_DIM), np.float32)
        all_colours[rows] = colours
        all_colours[[cols.row_of[r["id"]] for r in others]] = other_colours
        tuned = head.project(raw, all_colours)
        type_codes = cols.codes["type"].astype(np.int64)
        spaces = {"raw": calibrate_raw(raw, cols.live, type_codes, settings, seed),
                  "tuned": calibrate_tuned(raw, tuned, cols.live, type_codes,
                                           lambda v, r: head.project(v, all_colours[r]), settings, seed)}
        report.calibration = spaces
        report.seconds["calibrate"] = round(time.perf_counter() - t0, 1)
        head.info = {"trained_on": {"products": len(rows), "views": report.views, "labels": report.labels,
                                    "labels_sha256": labels_hash(ordered, columns), "columns": columns,
                                    "held_out": len(unseen), "split": SPLIT_ARTIFACT},
                     "settings": {"hidden": HIDDEN, "dim": settings.tune_dim, "epochs": EPOCHS, "max_steps": MAX_STEPS,
                                  "tune_views": settings.tune_views, "seed": seed}}
        data = head.to_bytes()
        store.write_artifact(COLOURS_ARTIFACT, write_colours(colour_of))
        store.write_artifact(SPLIT_ARTIFACT, json.dumps({"seed": seed, "trained": [r["id"] for r in ordered],
                                                         "held_out": sorted(unseen)}).encode())
        store.write_artifact(HEAD_ARTIFACT, data)
        probe_record = None
        if probe is not None:
            probe_data, probe_record = probe.to_bytes()
            store.write_artifact(TYPE_PROBE_ARTIFACT, probe_data)
            probe_record = {"artifact": TYPE_PROBE_ARTIFACT, **probe_record}
        report.seconds["total"] = round(time.perf_counter() - started, 1)
        # Adopted for nothing until measured (quality.tuning.adopt): a server never serves an unmeasured head.
        store.set_manifest(head={"artifact": HEAD_ARTIFACT, "sha256": sha256(data), "dim": head.dim,
                                 "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **head.info,
                                 "seconds": report.seconds["total"], "adopted": {}, "measured": None,
                                 "type_probe": probe_record},
                           spaces=spaces)
    finally:
        store.close()
    return report


def head_status(store) -> dict | None:
    """The head's record, with ``stale`` True when the catalog's labels changed since it was trained."""
    head = store.manifest.get("head")
    if not head:
        return None
    trained = head.get("trained_on") or {}
    cols = store.columns
    ids = cols.ids[np.flatnonzero(cols.live)]
    split = read_split(store.read_artifact(SPLIT_ARTIFACT))
    if split is not None:  # the products it trained on (held-out ones may change their labels freely)
        taught = set(split["trained"])
        ids = [pid for pid in ids if pid in taught]
    records = store.products(ids)
    now = labels_hash(records, trained.get("columns") or LABELS)
    return dict(head, stale=now != trained.get("labels_sha256"))


def _with_feed_labels(records: dict[str, dict], feed) -> dict[str, dict]:
    from ..intake.catalog import read_feed

    rows, _ = read_feed(feed)
    known = set(rows) & set(records)
    if not known:
        raise CatalogError(f"No product of the index is in {feed}: its ids must be the index's product ids.")
    return {pid: ({**rec, **{k: v for k, v in rows[pid].items() if v not in (None, "")},
                   "extra": {**(rec.get("extra") or {}), **(rows[pid].get("extra") or {})}} if pid in known else rec)
            for pid, rec in records.items()}


def _targets(records: list[dict], columns) -> dict[str, tuple[list[str], np.ndarray]]:
    """column -> (values, codes per product; -1 unknown), for columns with at least two values."""
    out = {}
    for column in columns:
        values = [label_of(r, column) for r in records]
        vocab = sorted({v for v in values if v is not None})
        if len(vocab) < 2:
            continue
        code = {v: i for i, v in enumerate(vocab)}
        out[column] = (vocab, np.array([code.get(v, -1) if v is not None else -1 for v in values], np.int64))
    return out


def _check_named_labels(records: list[dict], named, targets) -> None:
    """A column the user named (``--label``) that cannot teach anything is an error, not a silent skip."""
    useless = [c for c in named if c not in targets]
    if not useless:
        return
    seen = sorted({k for r in records for k, v in r.items() if isinstance(v, str)} | {k for r in records for k in (r.get("extra") or {})})
    # A label repeats: a column with a value per product (id, name, path) is not one.
    usable = [c for c in seen if c not in targets and 2 <= len({label_of(r, c) for r in records} - {None}) <= len(records) / 2]
    raise InvalidArgumentError(
        f"Label column {', '.join(map(repr, useless))} has fewer than two values among the index's products: nothing "
        f"to learn from it. Columns with values: {', '.join(usable) or 'none beyond the standard labels'}.",
        code="bad_option")


def _colours(records: list[dict], settings) -> tuple[np.ndarray, int]:
    """Colour descriptors of each product's image (threads: decoding releases the GIL); unreadable → zeros."""
    out = np.zeros((len(records), COLOUR_DIM), np.float32)
    bad = 0

    def one(i):
        try:
            return i, colour_descriptor(records[i]["image_path"])
        except (ImageError, OSError, TypeError, ValueError):
            return i, None

    bar = progress_bar(len(records), settings.progress, "colours")
    with ThreadPoolExecutor(max(1, settings.workers) + 1) as pool:
        for i, desc in pool.map(one, range(len(records)), chunksize=64):
            if desc is None:
                bad += 1
            else:
                out[i] = desc
            bar.update(1)
    bar.close()
    return out, bad


def _views(store, records: list[dict], settings, seed: int):
    """Shopper-style photos of ``tune_views`` seeded products: (raw vectors, colours, product index)."""
    n = min(settings.tune_views, len(records))
    if n <= 0:
        return np.zeros((0, store.dim), np.float32), np.zeros((0, COLOUR_DIM), np.float32), np.zeros(0, np.int64)
    from ..item.composite import cut, variant_photo
    from ..item.localise import item_crops

    embedder = Embedder.from_fingerprint(store.manifest["embedder"], settings=settings)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(records), n, replace=False)
    rows = {r["id"]: {"subCategory": r.get("subcategory") or "", "articleType": r.get("type") or ""} for r in records}
    pool = [r["id"] for r in records]
    index_of = {r["id"]: i for i, r in enumerate(records)}
    items: dict = {}

    def item(pid):
        if pid not in items:
            items[pid] = cut(records[index_of[pid]]["image_path"])
        return items[pid]

    crops, owners = [], []
    vectors, colours = [], []
    bar = progress_bar(n, settings.progress, "shopper views")
    for j, i in enumerate(picks):
        pid = records[i]["id"]
        try:
            try:
                _, photo = variant_photo(VIEW_VARIANTS[j % len(VIEW_VARIANTS)], pid, rows, pool, rng, item)
            except CatalogError:  # too few other categories for distractors: the item alone on a background
                _, photo = variant_photo(VIEW_VARIANTS[0], pid, rows, pool, rng, item)
        except (ImageError, CatalogError, OSError):
            bar.update(1)
            continue
        region = item_crops(photo.image, 1)[0][1]
        crops.append(region)
        owners.append(i)
        if len(crops) == embedder.batch_size:
            vectors.append(embedder.embed(crops))
            colours.extend(colour_descriptor(c) for c in crops)
            crops = []
        bar.update(1)
    if crops:
        vectors.append(embedder.embed(crops))
        colours.extend(colour_descriptor(c) for c in crops)
    bar.close()
    if not owners:
        return np.zeros((0, store.dim), np.float32), np.zeros((0, COLOUR_DIM), np.float32), np.zeros(0, np.int64)
    return np.concatenate(vectors), np.stack(colours), np.array(owners, np.int64)


def _pca_whitening(centred: np.ndarray, keep: int, block: slice, width: int) -> np.ndarray:
    """(width, k) columns that map the full input to the block's top-k principal components, unit variance."""
    sample = centred[np.random.default_rng(0).choice(len(centred), min(len(centred), 20_000), replace=False)]
    _, sv, vt = np.linalg.svd(sample.astype(np.float64), full_matrices=False)
    k = max(1, min(keep, len(sv), len(sample) // 2))  # a small catalog: only components its data pins down
    var = sv[:k] ** 2 / len(sample)
    # Shrunk whitening: weak components are lifted, not blown up (their held-out values are mostly noise).
    scale = 1 / np.sqrt(var + 0.1 * var.mean() + 1e-12)
    out = np.zeros((width, k), np.float32)
    out[block] = (vt[:k].T * scale).astype(np.float32)
    return out


def _train(x: np.ndarray, colours: np.ndarray, y: dict[str, np.ndarray], settings, seed: int) -> Head:
    """The MLP and one proxy matrix per label column, trained jointly; returned as a numpy Head."""
    import torch

    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is as fast, and never stalls on a busy machine
    try:
        return _fit(x, colours, y, settings, seed, torch)
    finally:
        torch.set_num_threads(threads)


def _fit(x, colours, y, settings, seed, torch) -> Head:
    colour_weight = 1.0
    features = np.concatenate([x, colour_weight * colours], 1).astype(np.float32)
    mean = features.mean(0)
    whiten = np.zeros((features.shape[1], 0), np.float32)
    for block, keep in ((slice(0, x.shape[1]), RAW_COMPONENTS), (slice(x.shape[1], None), COLOUR_COMPONENTS)):
        whiten = np.concatenate([whiten, _pca_whitening(features[:, block] - mean[block], keep, block, features.shape[1])], 1)
    inputs = torch.from_numpy((features - mean) @ whiten)
    labels = {c: torch.from_numpy(v) for c, v in y.items()}
    dim = settings.tune_dim
    net = torch.nn.Sequential(torch.nn.Linear(inputs.shape[1], HIDDEN), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                              torch.nn.Linear(HIDDEN, dim))
    proxies = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(int(v.max()) + 1, dim) * 0.01) for v in y.values()])
    weights = [LOSS_WEIGHTS.get(c, EXTRA_WEIGHT) for c in y]
    opt = torch.optim.AdamW([*net.parameters(), *proxies.parameters()], lr=LR, weight_decay=1e-4)
    per_epoch = (len(inputs) + BATCH - 1) // BATCH
    steps = min(max(EPOCHS * per_epoch, MIN_STEPS), MAX_STEPS)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    bar = progress_bar(steps, settings.progress, "training")
    bar.unit = "step"
    done = 0
    while done < steps:
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), BATCH):
            if done == steps:
                break
            batch = order[start:start + BATCH]
            z = torch.nn.functional.normalize(net(inputs[batch]), dim=1)
            loss = 0.0
            for w, p, target in zip(weights, proxies, labels.values()):
                t = target[batch]
                known = t >= 0
                if known.any():
                    logits = SCALE * z[known] @ torch.nn.functional.normalize(p, dim=1).T
                    loss = loss + w * torch.nn.functional.cross_entropy(logits, t[known])
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            done += 1
            bar.update(1)
    bar.close()
    first, last = net[0], net[3]
    return Head(mean, whiten, first.weight.detach().numpy().T.copy(), first.bias.detach().numpy().copy(),
                last.weight.detach().numpy().T.copy(), last.bias.detach().numpy().copy(), colour_weight)
