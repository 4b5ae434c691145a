"""One settings table (name, default, help, parser, choices) and the ``Settings`` value built from it.

A ``Settings`` is built once — defaults < ``STYLELENS_<NAME>`` environment variables < arguments — and
passed down to whatever needs it: two indexes in one process can hold different settings. Nothing
below the shells reads the environment. The table also feeds the CLI's flags, ``stylelens settings``
and the README's list.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import InvalidArgumentError


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None

    @property
    def env(self) -> str:
        return "STYLELENS_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def parse_bool(name: str, value) -> bool:
    """A yes/no option given as text (forms, query strings, environment); anything else is an error."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise InvalidArgumentError(f"{name} must be true or false, got {value!r}.")


def _bool(text: str) -> bool:
    return parse_bool("a yes/no setting", text)


def _precision(text: str) -> str:
    return "fp32" if text == "f32" else text  # f32: the name earlier versions used


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting("backbone", "resnet50", "Feature extractor (resnet50, efficientnet-lite0)."),
        Setting("weights", "imagenet", "Weights: 'imagenet' (download once, cached), a local state-dict file, or 'random'."),
        Setting("pooling", "max", "Global pooling of the last feature map: max (the original design) or avg.", choices=("max", "avg")),
        Setting("device", "cpu", "Inference device: cpu or cuda (cuda:N)."),
        Setting("runtime", "auto", "Inference runtime: auto, torch, openvino or onnx.", choices=("auto", "torch", "openvino", "onnx")),
        Setting("precision", "auto", "OpenVINO precision: auto (the fastest of fp32, bf16, int8 that keeps fp32's retrieval "
                "quality on a probe of the catalog, measured once per model and CPU), fp32 (alias f32), bf16 or int8.",
                _precision, choices=("auto", "fp32", "bf16", "int8", "f32")),
        Setting("input_size", 224, "Network input size in pixels (square; images are letterboxed to it). Smaller is faster; "
                "an index keeps the size it was built with.", int),
        Setting("runner", "local", "Where indexing runs: local (this machine) or ray (a Ray cluster).", choices=("local", "ray")),
        Setting("ray_address", "", "Ray cluster for runner ray: 'auto' (the one 'ray start' made), ray://HOST:10001; empty starts Ray here."),
        Setting("store", "", "Where a new index keeps its vectors: empty or 'local' (the index folder), milvus-lite:///FILE.db or "
                "milvus://HOST:PORT/COLLECTION. An existing index keeps its own."),
        Setting("milvus_token", "", "Credentials for a Milvus server: user:password or an API key (never put them in the store location)."),
        Setting("database_password", "", "Password for an index in PostgreSQL (postgresql://USER@HOST:PORT/DB); never put it "
                "in the location. Empty: none, or libpq's ~/.pgpass."),
        Setting("database_pool", 5, "Connections each process keeps open to an index's PostgreSQL (as many again may open "
                "under load).", int),
        Setting("batch_size", 64, "Images per inference batch.", int),
        Setting("workers", max(1, (os.cpu_count() or 2) - 1), "Decoding threads while indexing (0: decode in the indexing thread).", int),
        Setting("k", 5, "Number of recommendations returned.", int),
        Setting("localise", True, "Find the item(s) in a shopper's photo and search with each one's crop (a shot on white is "
                "searched as it is).", _bool),
        Setting("max_items", 6, "Most items searched in one photo (each gets its own box and results; a person wears ~3-4 "
                "garments, the parser knows 6 groups).", int),
        Setting("tune", True, "Search the space of the head `stylelens tune` trained, when the index has one, for the aspects "
                "(type, colour) it measured better on (--no-tune: the raw backbone space).", _bool),
        Setting("tune_views", 2000, "Shopper-style photos `stylelens tune` composes from the catalog to train on (0: catalog shots only).", int),
        Setting("tune_dim", 256, "Dimension of the tuned space `stylelens tune` learns.", int),
        Setting("identify_k", 10, "Labelled neighbours that vote on the item's type, gender and colour.", int),
        Setting("vote_temperature", 0.02, "Softmax temperature of the neighbours' vote: lower trusts the closest more.", float),
        Setting("type_model", True, "Name a photo's item by the type model trained on real photos (models/weights/typemodel) and "
                "search it within that type, when the index is built with the model's backbone (efficientnet-lite0); "
                "--no-type-model: by the vote of its catalog neighbours alone.", _bool),
        Setting("type_model_min_confidence", 0.3, "The type model's probability (of its type set) below which a photo's item is "
                "named by the vote instead (on real photos the model is right 58 % of the time below 0.3, 98 % above 0.9).", float),
        Setting("type_boost", 0.05, "Score added to results of the identified type (0 turns type-consistent ranking off).", float),
        Setting("type_boost_min_confidence", 0.4, "Identification confidence needed before type_boost applies.", float),
        Setting("max_pixels", 50_000_000, "Largest image (width x height) accepted; guards against decompression bombs.", int),
        Setting("max_upload_bytes", 10 * 1024 * 1024, "Largest upload accepted by the web API, in bytes.", int),
        Setting("upload_stall_s", 30.0, "Seconds an upload may send nothing before the server answers 408.", float),
        Setting("search", "auto", "Search method: exact, ann, or auto (ANN above ann_threshold products when FAISS is installed; "
                "Milvus for an index whose vectors live there).", choices=("auto", "exact", "ann", "milvus")),
        Setting("ann_threshold", 200_000, "Catalog size from which search='auto' uses an ANN index.", int),
        Setting("ann_nprobe", 16, "ANN search: inverted lists visited per query (more: higher recall, slower).", int),
        Setting("ann_candidates", 100, "ANN search: candidates re-ranked with the exact float32 vectors (at least 4*k).", int),
        Setting("cache_dir", str(Path.home() / ".cache" / "stylelens"), "Where downloaded weights and compiled models are kept."),
        Setting("batch_wait_ms", 2.0, "Web server: milliseconds a search waits for concurrent searches to be embedded with it in "
                "one batch (0: no batching).", float),
        Setting("host", "127.0.0.1", "Address the web server listens on."),
        Setting("port", 8000, "Port the web server listens on.", int),
        Setting("auth_secret", "", "Secret that signs shopper tokens; set, a shopper's likes and 'For you' need their token "
                "(share it between replicas). Empty: no tokens."),
        Setting("allowed_hosts", "", "Host names the web server answers to, comma-separated ('*' any). Empty: only "
                "localhost names while it listens on a loopback address (no DNS rebinding), any otherwise."),
        Setting("progress", True, "Show progress bars.", _bool),
        Setting("feed_max_columns", 1_000, "A product feed with more columns than this is refused.", int),
        Setting("feed_max_rows", 10_000_000, "A product feed with more rows than this is refused (index it in parts).", int),
        Setting("feed_max_row_bytes", 1_000_000, "A feed row (a CSV record or a JSON line) longer than this is skipped, with a warning.", int),
        Setting("feed_max_field_chars", 10_000, "A feed value longer than this is left empty, with a warning.", int),
        Setting("feed_max_extra_bytes", 16_384, "Extra columns kept per product (served with it), as JSON bytes; more are dropped, "
                "with a warning.", int),
        Setting("feed_max_bytes", 2 * 1024**3, "A feed file (downloaded, or an XML feed read whole) larger than this is refused.", int),
        Setting("allow_private_hosts", False, "Fetch feed and image URLs on loopback, private, link-local and cloud-metadata "
                "addresses (off: a feed cannot make stylelens reach inside your network).", _bool),
        Setting("fetch_concurrency", 16, "Image downloads in flight at once while indexing a feed.", int),
        Setting("fetch_per_host", 6, "Image downloads in flight at once to one host.", int),
        Setting("fetch_timeout_s", 20.0, "Seconds a download may wait to connect or between two reads before it counts as a timeout.", float),
        Setting("fetch_retries", 3, "Retries of a download after a timeout, a 429 or a 5xx answer (with backoff, honouring Retry-After).", int),
        Setting("fetch_backoff_s", 0.5, "Wait before the first retry of a download; doubled for each next one.", float),
        Setting("fetch_max_image_bytes", 20 * 1024**2, "An image URL whose body is larger than this is refused.", int),
        Setting("fetch_max_images", 1_000_000, "Most image URLs downloaded for one feed; the rest are refused.", int),
        Setting("feed_views", 5, "Pictures indexed per feed product: its main image and up to this many minus one more, each "
                "a view of the product (1: the main image only).", int),
        Setting("fetch_max_total_bytes", 50 * 1024**3, "Most bytes downloaded for one feed's images; the rest are refused.", int),
        Setting("duplicate_cosine", 0.97, "Cosine at or above which two products count as near-duplicates (collapse, eval).", float),
        Setting("rocchio_query", 1.0, "Personalised search: weight a of the query in q' = a*q + b*mean(liked) - c*mean(disliked).", float),
        Setting("rocchio_like", 1.0, "Personalised search: weight b of the shopper's liked items.", float),
        Setting("rocchio_dislike", 0.5, "Personalised search: weight c of the shopper's disliked items.", float),
        Setting("upload_total_s", 60.0, "Seconds a whole request body may take to arrive (however steadily it drips) before "
                "the server answers 408.", float),
        Setting("parser", True, "Shop the look: find each garment a person wears with the garment parser (its shipped weights, "
                "over the index's own backbone) and search it within its group's types; a lone garment is searched whole. "
                "Off, or an index on another backbone: the contrast localiser.", _bool),
    ]
}


def _coerce(setting: Setting, value, source: str):
    """A value from the environment (text) or from code (text or typed), parsed and checked."""
    try:
        if isinstance(value, str):
            value = setting.parse(value)
        elif setting.parse in (int, float) and not isinstance(value, bool):
            value = setting.parse(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"Setting {setting.name} ({source}) must be {setting.parse.__name__}, got {value!r}.",
                                   code="bad_option") from None
    if setting.choices and value not in setting.choices:
        raise InvalidArgumentError(f"Setting {setting.name} ({source}) must be one of {', '.join(setting.choices)}, got {value!r}.",
                                   code="bad_option")
    return value


class Settings:
    """Every setting's value, fixed when built. Read them as attributes: ``settings.type_boost``.

    >>> Settings.load(type_boost=0).type_boost
    0.0
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]):
        object.__setattr__(self, "_values", dict(values))

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Defaults < ``STYLELENS_*`` variables of ``environ`` (default: this process's) < ``overrides``
        (None means 'not given')."""
        environ = os.environ if environ is None else environ
        values = {}
        for name, setting in SETTINGS.items():
            raw = environ.get(setting.env)
            values[name] = setting.default if raw in (None, "") else _coerce(setting, raw, setting.env)
        return cls(values).replace(**overrides)

    def replace(self, **overrides) -> "Settings":
        """A copy with some values changed; None leaves a value as it is."""
        unknown = sorted(set(overrides) - set(SETTINGS))
        if unknown:
            raise InvalidArgumentError(f"Unknown setting '{unknown[0]}'. Known: {', '.join(SETTINGS)}.", code="bad_option")
        values = dict(self._values)
        for name, value in overrides.items():
            if value is not None:
                values[name] = _coerce(SETTINGS[name], value, "argument")
        return Settings(values)

    def __getattr__(self, name: str):
        if name.startswith("__"):  # pickle and copy look for dunders before __init__ ran: not settings
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no setting named {name!r}") from None

    def __reduce__(self):
        return (Settings, (self._values,))

    def __setattr__(self, name, value):
        raise AttributeError("Settings are fixed once built; use settings.replace(...)")

    def __eq__(self, other) -> bool:
        return isinstance(other, Settings) and other._values == self._values

    def __repr__(self) -> str:
        changed = {k: v for k, v in self._values.items() if v != SETTINGS[k].default}
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def to_dict(self) -> dict:
        return dict(self._values)

    def to_json(self) -> str:
        """Every value as one JSON text: how ``stylelens serve --workers N`` hands its settings to each worker."""
        return json.dumps(self._values)

    @classmethod
    def from_json(cls, text: str) -> "Settings":
        """The settings ``to_json`` wrote, checked again (names and values) as arguments are."""
        values = json.loads(text)
        return cls({name: setting.default for name, setting in SETTINGS.items()}).replace(**values)

    @property
    def cache_path(self) -> Path:
        """``cache_dir`` as a folder that exists."""
        path = Path(self.cache_dir).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path


def settings_or_default(settings: "Settings | None") -> "Settings":
    """The settings given, or the ones of this process's environment (for calls made without any)."""
    return Settings.load() if settings is None else settings
