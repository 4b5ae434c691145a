"""One settings table: name, default, help. Feeds CLI defaults, environment variables and docs.

Every setting can be overridden with an environment variable ``STYLELENS_<NAME>`` (upper case).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import InvalidArgumentError


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str

    @property
    def env(self) -> str:
        return "STYLELENS_" + self.name.upper()


TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def _bool(text: str) -> bool:
    return text.strip().lower() in TRUE_WORDS


def parse_bool(name: str, value) -> bool:
    """A yes/no option given as text (forms, query strings); anything but the known words is an error."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise InvalidArgumentError(f"{name} must be true or false, got {value!r}.")


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting("backbone", "resnet50", "Feature extractor (resnet50, efficientnet-lite0)."),
        Setting("weights", "imagenet", "Weights: 'imagenet' (download once, cached), a local state-dict file, or 'random'."),
        Setting("pooling", "max", "Global pooling of the last feature map: max (the original design) or avg."),
        Setting("device", "cpu", "Inference device: cpu or cuda.", str),
        Setting("runtime", "auto", "Inference runtime: auto, torch, openvino or onnx.", str),
        Setting("precision", "auto", "OpenVINO precision: auto (bf16 where the CPU has it and it matches torch fp32 on a probe set, else f32), f32 or bf16.", str),
        Setting("runner", "local", "Where indexing runs: local (this machine) or ray (a Ray cluster).", str),
        Setting("ray_address", "", "Ray cluster for runner ray: 'auto' (the one 'ray start' made), ray://HOST:10001; empty starts Ray here.", str),
        Setting("store", "", "Where a new index keeps its vectors: empty or 'local' (the index folder), milvus-lite:///FILE.db or "
                "milvus://HOST:PORT/COLLECTION. An existing index keeps its own.", str),
        Setting("milvus_token", "", "Credentials for a Milvus server: user:password or an API key (never put them in the store location).", str),
        Setting("batch_size", 64, "Images per inference batch.", int),
        Setting("workers", max(1, (os.cpu_count() or 2) - 1), "Decoding worker processes.", int),
        Setting("k", 5, "Number of recommendations returned.", int),
        Setting("identify_k", 10, "Labelled neighbours that vote on the item's type, gender and colour.", int),
        Setting("vote_temperature", 0.02, "Softmax temperature of the neighbours' vote: lower trusts the closest more.", float),
        Setting("type_boost", 0.05, "Score added to results of the identified type (0 turns type-consistent ranking off).", float),
        Setting("type_boost_min_confidence", 0.4, "Identification confidence needed before type_boost applies.", float),
        Setting("max_pixels", 50_000_000, "Largest image (width x height) accepted; guards against decompression bombs.", int),
        Setting("max_upload_bytes", 10 * 1024 * 1024, "Largest upload accepted by the web API, in bytes.", int),
        Setting("search", "auto", "Search method: exact, ann, or auto (ANN above ann_threshold products when FAISS is installed).", str),
        Setting("ann_threshold", 200_000, "Catalog size from which search='auto' uses an ANN index.", int),
        Setting("ann_nprobe", 16, "ANN search: inverted lists visited per query (more: higher recall, slower).", int),
        Setting("ann_candidates", 100, "ANN search: candidates re-ranked with the exact float32 vectors (at least 4*k).", int),
        Setting("cache_dir", str(Path.home() / ".cache" / "stylelens"), "Where downloaded weights and compiled models are kept.", str),
        Setting("host", "127.0.0.1", "Address the web server listens on.", str),
        Setting("port", 8000, "Port the web server listens on.", int),
        Setting("progress", True, "Show progress bars.", _bool),
        Setting("duplicate_cosine", 0.97, "Cosine at or above which two products count as near-duplicates (collapse, eval).", float),
        Setting("rocchio_query", 1.0, "Personalised search: weight a of the query in q' = a*q + b*mean(liked) - c*mean(disliked).", float),
        Setting("rocchio_like", 1.0, "Personalised search: weight b of the shopper's liked items.", float),
        Setting("rocchio_dislike", 0.5, "Personalised search: weight c of the shopper's disliked items.", float),
    ]
}


def get(name: str) -> Any:
    """The value of a setting: environment variable if set, else the default."""
    setting = SETTINGS[name]
    raw = os.environ.get(setting.env)
    if raw is None or raw == "":
        return setting.default
    return setting.parse(raw)


def cache_dir() -> Path:
    path = Path(get("cache_dir")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
