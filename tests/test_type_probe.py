"""The catalog's type probe (``tune.typeprobe``): a linear classifier of the type over raw vectors, calibrated."""

from __future__ import annotations

import numpy as np

from stylelens.models.typemodel import TypeModel
from stylelens.tune.typeprobe import fit_type_probe

FINGERPRINT = {"backbone": "resnet50", "pooling": "max", "preprocess": {"size": 224}}


def clusters(n: int, seed: int, noise: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around three type centres (one of them never labelled in ``codes`` -1 for a fifth)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(3, 32))
    codes = rng.integers(0, 3, n)
    x = centres[codes] + noise * rng.normal(size=(n, 32))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), codes


def test_the_probe_learns_the_types_and_names_unseen_vectors():
    x, codes = clusters(600, seed=1)
    codes = codes.copy()
    codes[::5] = -1  # unlabelled products teach nothing
    probe = fit_type_probe(x, codes, ["Tshirts", "Dresses", "Handbags", "Belts"], FINGERPRINT, seed=0)
    assert probe.types == ("Tshirts", "Dresses", "Handbags")  # Belts: no product to learn from
    assert probe.temperature > 0 and probe.backbone == "resnet50" and probe.input_size == 224
    unseen, truth = clusters(300, seed=2)
    named = np.array([probe.types.index(t) for t in probe.predict(unseen)[0]])
    assert (named == truth).mean() >= 0.95
    p = probe.probabilities(unseen)
    assert np.allclose(p.sum(1), 1, atol=1e-5)


def test_the_probe_is_seeded_and_survives_its_bytes():
    x, codes = clusters(300, seed=3)
    vocab = ["Tshirts", "Dresses", "Handbags"]
    a = fit_type_probe(x, codes, vocab, FINGERPRINT, seed=0)
    b = fit_type_probe(x, codes, vocab, FINGERPRINT, seed=0)
    assert np.array_equal(a.layers[0][0], b.layers[0][0]) and a.temperature == b.temperature
    data, meta = a.to_bytes()
    back = TypeModel.from_bytes(data, meta, "test")
    assert np.allclose(back.probabilities(x[:10]), a.probabilities(x[:10]))


def test_too_few_labelled_types_make_no_probe():
    x, _ = clusters(50, seed=4)
    assert fit_type_probe(x, np.zeros(50, np.int64), ["Tshirts", "Dresses"], FINGERPRINT) is None
