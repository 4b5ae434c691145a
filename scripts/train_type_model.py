"""Train the type model (stylelens.models.typemodel) and write it to src/stylelens/models/weights/.

    python scripts/train_type_model.py --data ../shared/data --cache /tmp/typemodel \\
        --index /path/to/an/efficientnet-lite0/index [--compare] [--seed 0]

What it learns from (``--data``, the shared data folder; the split is ``stylelens.quality.realdata``'s):
- the catalog's labels: every fashion-small image's ``articleType`` (the index's stored vectors when
  ``--index`` was built with the model's backbone and pooling, else a capped per-type sample, re-embedded);
- real-items ``train`` photos (CC0), whole frame and mirrored: label = the class's set of catalog types;
- street-ccp ``train`` worn garments (Apache-2.0), cropped by their box, and mirrored: label = the
  garment label's set of catalog types.
A set label is learnt with -log sum_{t in set} p(t). 20 % of the train photos (by a seeded hash) are held
out of the fit: the temperature is fitted on them (NLL), and the "not sure" threshold is the one that
maximises the simulated type P@5 there (sure: top 5 within the predicted type; not sure: the plain
neighbours of ``--index``). Nothing here reads a ``measure`` photo except the report.

Worn garments of ``--worn-heads``' groups (top, bottom, outerwear, shoes, bag) get a head of their own (``typemodel.WornHead``): a
logistic regression over the group's street-ccp labels (blouse, shirt, jeans, pants...), fitted on the street
train part's crops (``--worn-views``: the true box and mirrored, and the served garment parser's cut-outs;
``--worn-only`` retrains them alone, keeping the main head), cross-validated by photo for its temperature.

``--compare`` trains every design of the comparison (linear/MLP, pooling, backbones, data sources, input
view) and prints the tables; without it only the chosen design is trained and saved. Features are
extracted once into ``--cache`` (scripts/typemodel_features.py). Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from typemodel_features import (catalog_jobs, catalog_rows, catalog_subset, extract, real_items_jobs,  # noqa: E402
                                street_jitter_jobs, street_jobs, street_parser_features)

from stylelens.models.backbones import BACKBONES  # noqa: E402
from stylelens.models.typemodel import DEFAULT_PATH, TypeModel, WornHead  # noqa: E402
from stylelens.quality import realdata  # noqa: E402

HOLDOUT = 0.2  # share of the train photos kept out of the fit, for temperature and threshold
VOTE_K, VOTE_T, K = 10, 0.02, 5  # the neighbour vote as query.identify does it (settings identify_k, vote_temperature)
CATALOG_PER_TYPE = 40


@dataclass(frozen=True)
class Design:
    name: str
    backbone: str = "efficientnet-lite0"
    pooling: str = "max"
    hidden: int = 0  # 0: linear
    catalog: str = "full"  # full (the index's vectors), sample (capped per type), none
    real: bool = True
    street: bool = True
    views: tuple[str, ...] = ("whole", "flip")  # real-items train views (street: box + flip)
    test_view: str = "whole"
    street_views: tuple[str, ...] = ("box", "flip")
    epochs: int = 15
    weight_decay: float = 1e-4
    real_share: float = 1.0  # each source's total weight in the loss, relative to the catalog's
    street_share: float = 1.0


# ---- data ---------------------------------------------------------------------------------------
@dataclass
class Features:
    keys: np.ndarray
    sets: list[frozenset]
    x: np.ndarray  # (N, dim) float32
    lite0: np.ndarray  # (N, 1280) the Lite0 max vector of the same picture (what the index is searched with)


def _holdout(key: str, seed: int) -> bool:
    digest = hashlib.sha256(f"typemodel-holdout:{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < HOLDOUT


def photo_key(key: str) -> str:
    """real: part/class/stem/view -> part/class/stem; street: part/photo/label/group/view -> part/photo."""
    parts = key.split("/")
    return "/".join(parts[:3]) if len(parts) == 4 else "/".join(parts[:2])


class Data:
    """The cached features of every set, per backbone, and the Lite0 index the retrieval figure searches."""

    def __init__(self, data: Path, cache: Path, index: Path | None, log=print):
        self.data, self.cache, self.log = data, cache, log
        self._sets: dict = {}
        self.index = None
        if index is not None:
            from stylelens.index import open_store

            store = open_store(index)
            cols = store.columns
            live = np.flatnonzero(cols.live)
            self.index_vectors = np.ascontiguousarray(store.all_vectors()[live], np.float32)
            vocab = cols.vocab["type"]
            codes = cols.codes["type"][live]
            self.index_types = np.array([vocab[c] if c >= 0 else "" for c in codes])
            self.index = index

    def raw(self, backbone: str, name: str) -> dict:
        key = (backbone, name)
        if key not in self._sets:
            path = self.cache / f"{backbone}-{name}{CATALOG_PER_TYPE if name == 'catalog' else ''}.npz"
            if name == "real":
                jobs = real_items_jobs(self.data, centre=backbone == "efficientnet-lite0")
            elif name == "street":
                jobs = street_jobs(self.data)
            else:
                jobs = catalog_jobs(catalog_subset(catalog_rows(self.data), CATALOG_PER_TYPE))
            self._sets[key] = extract(jobs, backbone, path, log=self.log)
        return self._sets[key]

    def features(self, backbone: str, pooling: str, name: str, select) -> Features:
        """The rows of one set whose key passes ``select(key)``, with their label sets."""
        z = self.raw(backbone, name)
        lite = self.raw("efficientnet-lite0", name)
        keep = np.array([bool(select(str(k))) for k in z["keys"]], bool)
        keys = z["keys"][keep]
        lite_index = {str(k): i for i, k in enumerate(lite["keys"])}
        lite_rows = np.array([lite_index.get(str(k), -1) for k in keys])
        lite_x = np.where(lite_rows[:, None] >= 0, lite["max"][np.maximum(lite_rows, 0)].astype(np.float32), np.nan)
        return Features(keys, [frozenset(str(t).split("|")) for t in z["labels"][keep]],
                        z[pooling][keep].astype(np.float32), lite_x)

    def catalog(self, design: Design) -> tuple[np.ndarray, list[str]]:
        if design.catalog == "full":
            if self.index is None or design.backbone != "efficientnet-lite0" or design.pooling != "max":
                raise SystemExit(f"design {design.name}: the full catalog needs --index built with {design.backbone} {design.pooling}")
            return self.index_vectors, list(self.index_types)
        z = self.raw(design.backbone, "catalog")
        return z[design.pooling].astype(np.float32), [str(t) for t in z["labels"]]


def _view(key: str) -> str:
    return key.rsplit("/", 1)[1]


def training_sets(data: Data, d: Design, seed: int):
    """(fit examples, held-out examples) as (x, label sets, weights, source) lists."""
    def chosen(part, held):
        def sel_real(k):
            return k.startswith(part + "/") and _view(k) in (d.views if not held else (d.test_view,)) \
                and (part != "train" or _holdout(photo_key(k), seed) == held)
        return sel_real

    def sel_street(part, held):
        def sel(k):
            views = d.street_views if part == "train" and not held else ("box",)
            return k.startswith(part + "/") and _view(k) in views and (part != "train" or _holdout(photo_key(k), seed) == held)
        return sel

    out = {}
    for held in (False, True):
        parts = []
        # the held-out slice always holds both real sets: a catalog-only head is calibrated on real photos too
        if d.real or held:
            parts.append(("real", data.features(d.backbone, d.pooling, "real", chosen("train", held))))
        if d.street or held:
            parts.append(("street", data.features(d.backbone, d.pooling, "street", sel_street("train", held))))
        out[held] = parts
    return out[False], out[True]


# ---- the head -----------------------------------------------------------------------------------
def fit(x: np.ndarray, masks: np.ndarray, weights: np.ndarray, hidden: int, epochs: int, weight_decay: float,
        seed: int, log=print):
    """Adam on the weighted set loss -log sum_{t in set} softmax(z)_t. Returns (mean, scale, layers)."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    xs = torch.from_numpy(((x - mean) / scale).astype(np.float32))
    m = torch.from_numpy(masks)
    w = torch.from_numpy((weights / weights.mean()).astype(np.float32))
    n_types = masks.shape[1]
    if hidden:
        net = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(),
                                  torch.nn.Dropout(0.2), torch.nn.Linear(hidden, n_types))
    else:
        net = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(x.shape[1], n_types))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    batch = 512
    steps = epochs * ((len(xs) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(len(xs), generator=gen)
        for i in range(0, len(xs), batch):
            idx = order[i:i + batch]
            z = net(xs[idx])
            loss = (torch.logsumexp(z, 1) - torch.logsumexp(z.masked_fill(~m[idx], -1e9), 1)) * w[idx]
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
            sched.step()
    net.eval()
    linears = [mod for mod in net if isinstance(mod, torch.nn.Linear)]
    layers = [(lin.weight.detach().numpy().T.copy(), lin.bias.detach().numpy().copy()) for lin in linears]
    return mean.astype(np.float32), scale.astype(np.float32), layers


def set_masks(sets, types: list[str]) -> np.ndarray:
    pos = {t: i for i, t in enumerate(types)}
    m = np.zeros((len(sets), len(types)), bool)
    for r, s in enumerate(sets):
        for t in s:
            if t in pos:
                m[r, pos[t]] = True
    return m


def set_nll(p: np.ndarray, masks: np.ndarray) -> float:
    return float(-np.mean(np.log(np.maximum((p * masks).sum(axis=1), 1e-12))))


def fit_temperature(model: TypeModel, x: np.ndarray, masks: np.ndarray) -> float:
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 61))
    nll = [set_nll(model.probabilities(x, temperature=t), masks) for t in grid]
    return float(grid[int(np.argmin(nll))])


# ---- retrieval over the Lite0 index --------------------------------------------------------------
class Retrieval:
    """Type P@5 of photos searched in the Lite0 index: plain, or within a given type (numpy over the vectors)."""

    def __init__(self, data: Data):
        self.v = data.index_vectors
        self.types = data.index_types
        self.by_type = {t: np.flatnonzero(self.types == t) for t in np.unique(self.types)}

    def plain(self, q: np.ndarray):
        """(top-10 rows, their sims) per query, best first."""
        sims = q @ self.v.T
        top = np.argpartition(-sims, VOTE_K, axis=1)[:, :VOTE_K]
        s = np.take_along_axis(sims, top, 1)
        order = np.argsort(-s, axis=1, kind="stable")
        return np.take_along_axis(top, order, 1), np.take_along_axis(s, order, 1)

    def p_at_5(self, rows: np.ndarray, sets) -> np.ndarray:
        return np.array([np.mean([self.types[r] in s for r in row[:K]]) for row, s in zip(rows, sets)])

    def vote(self, rows, sims) -> list[str]:
        out = []
        for row, s in zip(rows, sims):
            w = np.exp((s - s.max()) / VOTE_T)
            tally: dict[str, float] = {}
            for r, wi in zip(row, w):
                tally[self.types[r]] = tally.get(self.types[r], 0.0) + wi
            out.append(max(tally, key=tally.get))
        return out

    def within(self, q: np.ndarray, types: list[str], sets) -> np.ndarray:
        """Type P@5 of the top 5 among products of each query's given type (queries grouped by type)."""
        out = np.zeros(len(q))
        types = np.asarray(types)
        for t in np.unique(types):
            rows = self.by_type.get(t)
            if rows is None or len(rows) == 0:
                continue
            which = np.flatnonzero(types == t)
            sims = q[which] @ self.v[rows].T
            k = min(K, len(rows))
            top = rows[np.argsort(-sims, axis=1, kind="stable")[:, :k]]
            for i, row in zip(which, top):
                out[i] = np.mean([self.types[r] in sets[i] for r in row])
        return out


def choose_threshold(conf: np.ndarray, correct_within: np.ndarray, plain: np.ndarray) -> float:
    """The confidence threshold that maximises the held-out type P@5 (sure: within type; else plain)."""
    best_t, best = 0.0, -1.0
    for t in np.unique(np.concatenate([[0.0], np.round(conf, 3)])):
        score = np.where(conf >= t, correct_within, plain).mean()
        if score > best + 1e-9:
            best_t, best = float(t), score
    return best_t


# ---- one design, trained and measured ------------------------------------------------------------
def train_design(data: Data, d: Design, seed: int, log=print) -> tuple[TypeModel, dict]:
    t0 = time.perf_counter()
    fit_parts, held_parts = training_sets(data, d, seed)
    xs, sets, weights = [], [], []
    if d.catalog != "none":
        cx, ct = data.catalog(d)
        xs.append(cx)
        sets += [frozenset([t]) for t in ct]
        weights.append(np.full(len(cx), 1.0 / len(cx)))
    for source, f in fit_parts:
        xs.append(f.x)
        sets += f.sets
        # each class (real) or group (street) weighs alike inside its source: the small classes are the weak ones
        groups = [str(k).split("/")[1 if source == "real" else 3] for k in f.keys]
        names, inv, counts = np.unique(groups, return_inverse=True, return_counts=True)
        share = d.real_share if source == "real" else d.street_share
        weights.append(share / len(names) / counts[inv])
    types = sorted({t for s in sets for t in s} | ({*data.index_types} - {""} if d.catalog == "full" else set()))
    x = np.concatenate(xs).astype(np.float32)
    w = np.concatenate(weights)
    masks = set_masks(sets, types)
    mean, scale, layers = fit(x, masks, w, d.hidden, d.epochs, d.weight_decay, seed, log)
    model = TypeModel(d.backbone, d.pooling, BACKBONES[d.backbone].preprocess.size, tuple(types), mean, scale, layers)
    # calibration on the held-out slice of the train photos
    hx = np.concatenate([f.x for _, f in held_parts])
    hsets = [s for _, f in held_parts for s in f.sets]
    hl0 = np.concatenate([f.lite0 for _, f in held_parts])
    model.temperature = fit_temperature(model, hx, set_masks(hsets, types))
    if data.index is not None:
        ret = Retrieval(data)
        pred, conf, _ = model.predict(hx)
        rows, _ = ret.plain(hl0)
        model.threshold = choose_threshold(conf, ret.within(hl0, pred, hsets), ret.p_at_5(rows, hsets))
    info = {"fit_examples": len(x), "held_out": len(hx), "seconds": round(time.perf_counter() - t0, 1)}
    return model, info


def measure(data: Data, model: TypeModel, d: Design, ret: Retrieval | None) -> dict:
    """Class accuracy and retrieval on the measure parts (real-items per class, street per group)."""
    out = {}
    for name, view, level in (("real", d.test_view, 1), ("street", "box", 3)):
        f = data.features(d.backbone, d.pooling, name, lambda k, v=view: k.startswith("measure/") and _view(k) == v)
        groups = np.array([str(k).split("/")[level] for k in f.keys])
        pred, conf, sure = model.predict(f.x)
        correct = np.array([p in s for p, s in zip(pred, f.sets)], float)
        res = {"n": len(f.x), "groups": groups, "correct": correct, "sure": sure.astype(float)}
        if ret is not None:
            rows, _ = ret.plain(f.lite0)
            plain = ret.p_at_5(rows, f.sets)
            within = ret.within(f.lite0, pred, f.sets)
            res["p5"] = np.where(sure, within, plain)
            res["p5_always"] = within
        out[name] = res
    return out


def baseline(data: Data, ret: Retrieval) -> dict:
    """Today: the neighbour vote of the Lite0 index, and plain / vote-restricted type P@5."""
    out = {}
    for name, view, level in (("real", "whole", 1), ("street", "box", 3)):
        f = data.features("efficientnet-lite0", "max", name, lambda k, v=view: k.startswith("measure/") and _view(k) == v)
        groups = np.array([str(k).split("/")[level] for k in f.keys])
        rows, sims = ret.plain(f.lite0)
        voted = ret.vote(rows, sims)
        out[name] = {"n": len(f.x), "groups": groups, "correct": np.array([v in s for v, s in zip(voted, f.sets)], float),
                     "p5_plain": ret.p_at_5(rows, f.sets), "p5": ret.within(f.lite0, voted, f.sets)}
    return out


def catalog_loo(data: Data, backbone: str, pooling: str) -> float:
    """Leave-one-out type P@5 inside the catalog sample (at most CATALOG_PER_TYPE products a type)."""
    z = data.raw(backbone, "catalog")
    v = z[pooling].astype(np.float32)
    labels = z["labels"]
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argpartition(-sims, K, axis=1)[:, :K]
    return float((labels[top] == labels[:, None]).mean())


def summary(res: dict, key: str) -> dict:
    g = res["groups"]
    per = {c: float(res[key][g == c].mean()) for c in sorted(set(g))}
    return {"all": float(res[key].mean()), "mean_of_classes": float(np.mean(list(per.values()))), "per": per}


# ---- worn garments' own heads ---------------------------------------------------------------------
# The groups given a head of their own (--worn-heads): dresses keep the main head (street measure found 0.709 by it,
# 0.692 by a head of their own; the others gain, see docs/shop-the-look.md "Worn garments' own heads").
WORN_HEADS = ("top", "bottom", "outerwear", "shoes", "bag")
WORN_VIEWS = ("box", "flip", "parser")  # the street train crops they learn from (--worn-views)
WORN_C = 0.01  # inverse L2 strength (scikit-learn's C) of each head's logistic regression
WORN_FOLDS = 5
# real-items classes that are one street label (their catalog types the same), lent to the worn heads by --worn-real
REAL_AS_STREET = {"t-shirt": "t-shirt", "shirt": "shirt", "shorts": "shorts", "skirt": "skirt"}


def worn_rows(data: Data, group: str, views, real_per_class: int = 0, seed: int = 0) -> dict:
    """The street train part's worn garments of ``group`` in ``views`` (box, flip: street; pad0, pad15, shift, mask
    and their -flip: street-jitter; parser: street-parser): keys, photo, label index, Lite0 max vectors."""
    sources = [data.raw("efficientnet-lite0", "street")]
    if any(v not in ("box", "flip", "parser") for v in views):
        sources.append(extract(street_jitter_jobs(data.data), "efficientnet-lite0",
                               data.cache / "efficientnet-lite0-street-jitter.npz", log=data.log))
    if "parser" in views:
        if data.index is None:
            raise SystemExit("the worn heads' parser crops need --index (its garment parser cuts them)")
        sources.append(street_parser_features(data.data, data.index, data.cache / "efficientnet-lite0-street-parser.npz",
                                              log=data.log))
    keys, x = [], []
    for z in sources:
        for i, k in enumerate(z["keys"]):
            part, photo, label, g, view = str(k).split("/")
            if part == "train" and g == group and view in views:
                keys.append(str(k))
                x.append(z["max"][i])
    if real_per_class:  # real-items train photos (whole frame) of classes that are one street label of this group
        names, _ = street_labels(data.data)
        index_of = {n: i for i, n in names.items()}
        z = data.raw("efficientnet-lite0", "real")
        rng = np.random.default_rng(seed)
        for cls, label in REAL_AS_STREET.items():
            if label not in index_of or f"/{index_of[label]}/{group}/" not in "".join(f"/{k.split('/')[2]}/{k.split('/')[3]}/" for k in keys):
                continue
            rows = [i for i, k in enumerate(z["keys"]) if str(k).startswith(f"train/{cls}/") and str(k).endswith("/whole")]
            for i in sorted(rng.permutation(rows)[:real_per_class]):
                stem = str(z["keys"][i]).split("/")[2]
                keys.append(f"train/real-{cls}-{stem}/{index_of[label]}/{group}/real")
                x.append(z["max"][i])
    return {"keys": keys, "photo": np.array([k.split("/")[1] for k in keys]),
            "label": np.array([int(k.split("/")[2]) for k in keys]), "view": np.array([k.rsplit("/", 1)[1] for k in keys]),
            "x": np.asarray(x, np.float32)}


def fit_logistic(u: np.ndarray, y: np.ndarray, classes: int, c: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on standardised ``u``, scikit-learn's objective (C * summed NLL + |W|^2 / 2),
    by L-BFGS in torch: (W (dim, classes), b)."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    ut, yt = torch.from_numpy(u.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
    w = torch.zeros((u.shape[1], classes), requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=500, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(ut @ w + b, yt, reduction="sum") + (w * w).sum() / (2 * c)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy().astype(np.float64), b.detach().numpy().astype(np.float64)


def fit_worn_head(model: TypeModel, rows: dict, label_names: dict[int, str], label_types: dict[int, frozenset],
                  group: str, c: float, seed: int, folds=None) -> WornHead:
    """A head over the group's street labels, reading the vector and (a linear model) the model's own logits over the
    group's types; the logits are linear in the vector, so both fold into one linear layer over the vector."""
    from stylelens.item.groups import GROUP_TYPES

    x = rows["x"] if folds is None else rows["x"][folds]
    labels = sorted(set(rows["label"].tolist()))
    y = np.searchsorted(labels, rows["label"] if folds is None else rows["label"][folds])
    m1, s1 = x.mean(axis=0), x.std(axis=0) + 1e-6
    u = (x - m1) / s1
    linear = len(model.layers) == 1
    if linear:  # the model's logits over the group's types, /5 so they do not swamp the vector's 1,280 features
        ti = [model.types.index(t) for t in sorted(GROUP_TYPES[group]) if t in model.types]
        wt = model.layers[0][0][:, ti].astype(np.float64) / (5 * model.temperature)
        bt = model.layers[0][1][ti].astype(np.float64) / (5 * model.temperature)
        lg = ((x - model.mean) / model.scale) @ wt + bt
        m2, s2 = lg.mean(axis=0), lg.std(axis=0) + 1e-6
        u = np.concatenate([u, (lg - m2) / s2], axis=1)
    w, b = fit_logistic(u, y, len(labels), c, seed)
    if linear:
        a1, a2 = w[:x.shape[1]], w[x.shape[1]:]
        # lg = u1 @ (diag(s1 / S) wt) + ((m1 - M) / S) @ wt + bt, with u1 = (x - m1) / s1
        w = a1 + ((s1 / model.scale)[:, None] * wt) @ (a2 / s2[:, None])
        b = b + ((((m1 - model.mean) / model.scale) @ wt + bt - m2) / s2) @ a2
    return WornHead(tuple(label_names[i] for i in labels), tuple(label_types[i] for i in labels), m1.astype(np.float32),
                    s1.astype(np.float32), w.astype(np.float32), b.astype(np.float32))


def street_labels(data: Path) -> tuple[dict[int, str], dict[int, frozenset]]:
    with open(Path(data) / "street-ccp" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return ({int(r["index"]): r["name"] for r in rows},
            {int(r["index"]): frozenset(t for t in r["catalog_types"].split("|") if t) for r in rows})


def _fold(photo: str) -> int:
    return int.from_bytes(hashlib.sha256(f"worn-fold:{photo}".encode()).digest()[:4], "big") % WORN_FOLDS


def train_worn_heads(data: Data, model: TypeModel, groups, views, c: float, seed: int, log=print,
                     real_per_class: int = 0) -> dict:
    """Each group's head: cross-validated by photo on the street train part (its temperature fitted on the held-out
    folds' label NLL, and the accuracy of the type it searches within, on the box and parser crops), then fitted
    on all of it. Sets ``model.worn``; returns the cross-validated figures."""
    from stylelens.item.groups import GROUP_TYPES

    names, types = street_labels(data.data)
    report = {}
    for group in groups:
        rows = worn_rows(data, group, views, real_per_class, seed)
        folds = np.array([_fold(p) for p in rows["photo"]])
        labels = sorted(set(rows["label"].tolist()))
        logits = np.zeros((len(rows["x"]), len(labels)))
        for f in range(WORN_FOLDS):
            head = fit_worn_head(model, rows, names, types, group, c, seed, folds != f)
            z = ((rows["x"][folds == f] - head.mean) / head.scale) @ head.w + head.b
            index_of = {names[i]: i for i in labels}
            cols = [labels.index(index_of[n]) for n in head.labels]
            logits[np.ix_(folds == f, cols)] = z
            missing = [i for i in range(len(labels)) if i not in cols]
            logits[np.ix_(folds == f, missing)] = -1e4  # a label absent from the fit folds
        y = np.searchsorted(labels, rows["label"])
        grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 61))
        nll = []
        for t in grid:
            z = logits / t
            z = z - z.max(axis=1, keepdims=True)
            nll.append(float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y])))
        temperature = float(grid[int(np.argmin(nll))])
        group_types = sorted(set().union(*(types[i] for i in labels)))
        cover = np.array([[t in types[i] for t in group_types] for i in labels], float)
        pick = np.array(group_types)[(np.exp(logits / temperature) @ cover).argmax(axis=1)]
        right = np.array([t in types[lab] for t, lab in zip(pick, rows["label"])])
        ti = [model.types.index(t) for t in group_types if t in model.types]
        model_pick = np.array(model.types)[np.array(ti)[model.logits(rows["x"])[:, ti].argmax(axis=1)]]
        model_right = np.array([t in types[lab] for t, lab in zip(model_pick, rows["label"])])
        report[group] = {"rows": len(y), "temperature": temperature, **{
            f"{view}_right_cv": round(float(right[rows["view"] == view].mean()), 4) for view in ("box", "parser")
            if (rows["view"] == view).any()}, **{
            f"{view}_right_by_the_model_fitted_on_them": round(float(model_right[rows["view"] == view].mean()), 4)
            for view in ("box", "parser") if (rows["view"] == view).any()}}
        head = fit_worn_head(model, rows, names, types, group, c, seed)
        head.temperature = temperature
        model.worn[group] = head
        log(f"worn head {group}: {report[group]}")
    return report


# ---- the comparison ------------------------------------------------------------------------------
def designs(backbones) -> list[Design]:
    base = Design("lite0 max linear, catalog+real+street")
    out = [
        Design("catalog only (lite0 max linear)", real=False, street=False),
        base,
        replace(base, name="lite0 max MLP-512", hidden=512),
        replace(base, name="lite0 max linear, no street", street=False),
        replace(base, name="lite0 max linear, no catalog", catalog="none"),
        replace(base, name="lite0 max linear, +centre crop aug", views=("whole", "flip", "centre")),
        replace(base, name="lite0 max linear, input=centre crop", views=("centre", "whole", "flip"), test_view="centre"),
        replace(base, name="lite0 max linear, catalog sample", catalog="sample"),
        replace(base, name="lite0 avg linear, catalog sample", catalog="sample", pooling="avg"),
    ]
    # the backbones alike: catalog sample, no mirrored pictures (Lite2's were not extracted, for time)
    for b in ["efficientnet-lite0", *backbones]:
        short = b.replace("efficientnet-", "")
        for pooling in ("max", "avg"):
            out.append(Design(f"{short} {pooling} linear, catalog sample, no flip", backbone=b, pooling=pooling,
                              catalog="sample", views=("whole",), street_views=("box",)))
    return out


def fmt(x: float) -> str:
    return f"{x:.3f}"


def taught_sets(data: Path) -> list[list[str]]:
    """Every catalog-type set a real photo of the training data was labelled with, sorted."""
    sets = set()
    with open(Path(data) / "real-items" / "classes.csv", newline="") as fh:
        sets |= {tuple(sorted(r["catalog_types"].split("|"))) for r in csv.DictReader(fh)}
    with open(Path(data) / "street-ccp" / "labels.csv", newline="") as fh:
        sets |= {tuple(sorted(t for t in r["catalog_types"].split("|") if t)) for r in csv.DictReader(fh)}
    return sorted(list(s) for s in sets if s)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:]))
    ap.add_argument("--data", type=Path, default=realdata.default_root(), help="the shared data folder (default: %(default)s)")
    ap.add_argument("--cache", type=Path, required=True, help="where extracted features are kept (npz)")
    ap.add_argument("--index", type=Path, help="an efficientnet-lite0 index of the whole catalog (catalog labels, retrieval)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compare", action="store_true", help="train and measure every design; print the tables")
    ap.add_argument("--backbones", default="efficientnet-lite1,efficientnet-lite2", help="extra backbones for --compare")
    ap.add_argument("--design", default="lite0 max linear, +centre crop aug", help="the design to save (default: the one shipped)")
    ap.add_argument("--out", type=Path, default=DEFAULT_PATH)
    ap.add_argument("--json", type=Path, help="write the comparison's numbers here")
    ap.add_argument("--only", default="", help="with --compare: only the designs whose name starts with one of these (separated by ;)")
    ap.add_argument("--worn-heads", default=",".join(WORN_HEADS),
                    help="garment groups given a head of their own, trained on street crops (empty: none)")
    ap.add_argument("--worn-views", default=",".join(WORN_VIEWS), help="the street train crops the worn heads learn from")
    ap.add_argument("--worn-c", type=float, default=WORN_C, help="the worn heads' inverse L2 strength")
    ap.add_argument("--worn-real", type=int, default=0,
                    help="lend the worn heads up to this many real-items train photos of each class that is one street label")
    ap.add_argument("--worn-only", action="store_true",
                    help="keep the model at --out (its main head) and (re)train only its worn heads")
    args = ap.parse_args(argv)

    data = Data(args.data, args.cache, args.index)
    worn_groups = [g for g in args.worn_heads.split(",") if g]
    worn_views = tuple(v for v in args.worn_views.split(",") if v)
    if args.worn_only:
        model = TypeModel.load(args.out)
        model.worn = {}
        report = train_worn_heads(data, model, worn_groups, worn_views, args.worn_c, args.seed,
                                  real_per_class=args.worn_real)
        model.meta["worn_heads_training"] = worn_meta(worn_views, args.worn_c, report)
        meta = model.save(args.out)
        print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, sha256 {meta['sha256'][:12]})")
        return 0
    ret = Retrieval(data) if data.index is not None else None
    backbones = [b for b in args.backbones.split(",") if b]
    all_designs = designs(backbones)
    prefixes = tuple(p for p in args.only.split(";") if p)
    todo = ([d for d in all_designs if not prefixes or d.name.startswith(prefixes)] if args.compare
            else [d for d in all_designs if d.name == args.design])
    if not todo:
        raise SystemExit(f"unknown design {args.design!r}; one of: " + "; ".join(d.name for d in all_designs))
    report = {}
    if ret is not None and args.compare:
        base = baseline(data, ret)
        print(f"neighbour vote: real acc {fmt(base['real']['correct'].mean())}, real P@5 plain {fmt(base['real']['p5_plain'].mean())}", flush=True)
        report["neighbour vote (today)"] = {
            "real_acc": summary(base["real"], "correct"), "street_acc": summary(base["street"], "correct"),
            "real_p5": summary(base["real"], "p5"), "street_p5": summary(base["street"], "p5"),
            "real_p5_plain": summary(base["real"], "p5_plain"), "street_p5_plain": summary(base["street"], "p5_plain")}
    models = {}
    for d in todo:
        model, info = train_design(data, d, args.seed)
        res = measure(data, model, d, ret)
        r = {"design": d.__dict__ | {"views": list(d.views)}, **info, "temperature": model.temperature,
             "threshold": model.threshold, "types": len(model.types),
             "real_acc": summary(res["real"], "correct"), "street_acc": summary(res["street"], "correct"),
             "real_sure": float(res["real"]["sure"].mean()), "street_sure": float(res["street"]["sure"].mean())}
        if ret is not None:
            r |= {"real_p5": summary(res["real"], "p5"), "street_p5": summary(res["street"], "p5"),
                  "real_p5_always": summary(res["real"], "p5_always")}
        report[d.name] = r
        models[d.name] = (model, r)
        print(f"{d.name}: real acc {fmt(r['real_acc']['all'])} (classes {fmt(r['real_acc']['mean_of_classes'])}), "
              f"street acc {fmt(r['street_acc']['all'])}" + (f", real P@5 {fmt(r['real_p5']['all'])} "
              f"(min class {fmt(min(r['real_p5']['per'].values()))}), street P@5 {fmt(r['street_p5']['all'])}" if ret else "")
              + f" [T={model.temperature:.2f}, thr={model.threshold:.2f}, {info['seconds']}s]", flush=True)
        if args.json:  # as it goes: a long comparison that is stopped keeps what it measured
            args.json.write_text(json.dumps(report, indent=1))
    if args.compare:
        print("\ncatalog leave-one-out type P@5 (catalog sample, at most %d a type)" % CATALOG_PER_TYPE)
        for b in ["efficientnet-lite0", *backbones]:
            print(f"| {b} | max {fmt(catalog_loo(data, b, 'max'))} | avg {fmt(catalog_loo(data, b, 'avg'))} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print_tables(report)
    if args.design in models:
        model, r = models[args.design]
        d = next(d for d in todo if d.name == args.design)
        model.meta = {
            "design": args.design, "hidden": d.hidden, "seed": args.seed,
            "training_data": {
                "catalog": "fashion-small articleType labels, all products with an image" if d.catalog == "full"
                else f"fashion-small, at most {CATALOG_PER_TYPE} products a type" if d.catalog == "sample" else "none",
                "real-items": "train part (stylelens.quality.realdata, seed 0), views " + "+".join(d.views) + "; licence CC0" if d.real else "none",
                "street-ccp": "train part, worn garments cropped by their box, and mirrored; licence Apache-2.0" if d.street else "none",
                "held_out_for_calibration": f"{HOLDOUT:.0%} of the train photos"},
            "measured": {"real_items_class_accuracy": round(r["real_acc"]["all"], 4),
                         "real_items_per_class": {k: round(v, 4) for k, v in r["real_acc"]["per"].items()},
                         "street_group_accuracy": {k: round(v, 4) for k, v in r["street_acc"]["per"].items()},
                         **({"real_items_type_p5_within_type": round(r["real_p5"]["all"], 4)} if ret else {})},
            "rebuild": "python scripts/train_type_model.py --data ../shared/data --cache CACHE --index LITE0_INDEX",
            # The type sets the real photos were labelled with: the model cannot tell their members apart (a t-shirt
            # is Tshirts or Lounge Tshirts), so a search for a type looks within the smallest set holding it.
            "taught_sets": taught_sets(args.data),
        }
        if worn_groups:
            report = train_worn_heads(data, model, worn_groups, worn_views, args.worn_c, args.seed)
            model.meta["worn_heads_training"] = worn_meta(worn_views, args.worn_c, report)
        meta = model.save(args.out)
        print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, sha256 {meta['sha256'][:12]})")
    return 0


def worn_meta(views, c: float, report: dict) -> dict:
    return {"data": "street-ccp train part (licence Apache-2.0), worn garments labelled with their street label, crops: "
                    + "+".join(views) + " (parser: the served garment parser's cut-outs, matched to their garment)",
            "features": "the Lite0 max vector and (folded in) the main head's logits over the group's types",
            "l2_c": c, "cross_validated": report,
            "rebuild": "python scripts/train_type_model.py --data ../shared/data --cache CACHE --index LITE0_INDEX --worn-only"}


def print_tables(report: dict) -> None:
    rows = []
    for name, r in report.items():
        ra, sa = r["real_acc"], r["street_acc"]
        p5 = r.get("real_p5", {"all": float("nan"), "per": {}})
        sp5 = r.get("street_p5", {"all": float("nan")})
        rows.append((name, ra, sa, p5, sp5, r.get("real_sure")))
    print("\n| design | real-items class acc | mean of classes | street worn acc | real-items type P@5 (within predicted type) | min class P@5 | street P@5 | sure (real) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, ra, sa, p5, sp5, sure in rows:
        print(f"| {name} | {fmt(ra['all'])} | {fmt(ra['mean_of_classes'])} | {fmt(sa['all'])} | {fmt(p5['all'])} | "
              f"{fmt(min(p5['per'].values())) if p5['per'] else '-'} | {fmt(sp5['all'])} | {fmt(sure) if sure is not None else '-'} |")
    classes = sorted(next(iter(report.values()))["real_acc"]["per"])
    groups = sorted(next(iter(report.values()))["street_acc"]["per"])
    for title, key, cols in (("real-items class accuracy per class", "real_acc", classes),
                             ("real-items type P@5 per class", "real_p5", classes),
                             ("street-ccp worn-garment accuracy per group", "street_acc", groups)):
        print(f"\n{title}\n\n| design | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
        for name, r in report.items():
            if key in r:
                print(f"| {name} | " + " | ".join(fmt(r[key]["per"].get(c, float("nan"))) for c in cols) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
