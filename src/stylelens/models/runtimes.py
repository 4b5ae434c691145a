"""The runtimes that run the one ``EmbeddingNet``: torch (any device), OpenVINO (fp32, bf16, int8) and
ONNX Runtime.

A runtime is a function ``make(emb) -> run(uint8 NHWC) -> float32 (N, dim) unit vectors``; ``RUNTIMES``
below lists them by name and ``AUTO_ORDER`` is the order ``runtime='auto'`` tries. ``emb`` is the
embedder, taken as it is (its ``net``, ``device``, ``preprocess``, ``fingerprint()``, ``prepare()`` and
``settings``): this module does not import the embedder. The fast runtimes convert ``emb.net`` once and
keep the converted model in ``<cache_dir>/compiled/<key>/`` (key: hash of the embedder fingerprint,
runtime and library versions).

Precision ``auto`` (OpenVINO) measures fp32, bf16 (where the CPU has it natively) and int8 (NNCF,
calibrated on catalog images) on a probe and runs the fastest that keeps fp32's retrieval quality: the
rule is ``models.precision.keeps_quality``. The decision is cached per model and CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import InvalidArgumentError, MissingExtraError, import_extra
from ..files import write_json_atomic
from .precision import CANDIDATES, MIN_COSINE, MIN_RECALL, MIN_RELATIVE, PRECISIONS, canonical, choose, keeps_quality, quality

CACHE_FORMAT = 1


# ---- cache ----------------------------------------------------------------------------------
def cache_key(emb, runtime: str, variant: str) -> str:
    import torch

    from .. import __version__

    versions = {"torch": torch.__version__, "stylelens": __version__}
    for module in ("openvino", "onnxruntime", "nncf"):
        versions[module] = _version_of(module)
    blob = json.dumps({"format": CACHE_FORMAT, "runtime": runtime, "variant": variant,
                       "fingerprint": emb.fingerprint(), "versions": versions}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _version_of(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


def cached_model(emb, runtime: str, variant: str, filename: str, write) -> Path:
    """Path of the converted model, writing it once with ``write(path)``; atomic under concurrent builds."""
    folder = emb.settings.cache_path / "compiled" / f"{runtime}-{emb.spec.name}-{variant}-{cache_key(emb, runtime, variant)}"
    target = folder / filename
    if target.is_file():
        return target
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        write(tmp / filename)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished first: keep theirs
            if not target.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _example_input(emb):
    import torch

    size = emb.preprocess.size
    return torch.zeros((1, size, size, 3), dtype=torch.uint8)


# ---- OpenVINO -------------------------------------------------------------------------------
def _import_openvino():
    return import_extra("openvino", "openvino", "fast", "The OpenVINO runtime")


def openvino_convert(ov, module, example):
    """``ov.convert_model`` without torch's notice that the torch.jit.trace it runs is deprecated (nothing a user can act on)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated", category=FutureWarning)
        return ov.convert_model(module, example_input=example)


def _openvino_ir(emb, ov) -> Path:
    size = emb.preprocess.size

    def write(path: Path):
        model = openvino_convert(ov, emb.net, _example_input(emb))
        model.reshape([-1, size, size, 3])  # any batch size
        ov.save_model(model, str(path), compress_to_fp16=False)

    return cached_model(emb, "openvino", "fp32", "model.xml", write)


def probe_pixels(prepare, n: int = 48, seed: int = 0) -> np.ndarray:
    """Deterministic product-like pictures (a textured garment shape on white), made network-ready by
    ``prepare(PIL image) -> uint8 array`` (an embedder's ``prepare``): the probe when no catalog is at hand."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = (int(v) for v in rng.integers(48, 160, 2))
        colours = rng.integers(0, 256, (3, 3, 3)).astype(np.uint8)
        body = np.asarray(Image.fromarray(colours).resize((w, h), Image.Resampling.BICUBIC), np.int16)
        body = np.clip(body + rng.integers(-24, 25, (h, w, 3)), 0, 255).astype(np.uint8)
        shape = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(shape)
        box = (int(w * rng.uniform(0, 0.2)), int(h * rng.uniform(0, 0.2)), int(w * rng.uniform(0.8, 1)), int(h * rng.uniform(0.8, 1)))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=255)
        picture = Image.new("RGB", (w, h), (255, 255, 255))
        picture.paste(Image.fromarray(body), (0, 0), shape)
        out.append(prepare(picture))
    return np.stack(out)


def cpu_name() -> str:
    """The CPU model and the instruction sets that decide reduced-precision speed: a precision measured on
    one CPU is not taken for another (the decision's cache key and the manifest carry it)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")
    return f"{model} ({' '.join(f for f in wanted if f in flags) or 'baseline'}, {os.cpu_count()} cpus)"


def _native_bf16(core) -> bool:
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _openvino_int8_ir(emb, ov, calibration: np.ndarray | None) -> Path:
    """The fp32 IR quantized to int8 by NNCF (post-training, calibrated on ``calibration`` pixels: catalog
    images when a build supplies them, generated product pictures otherwise); converted once, cached."""
    nncf = import_extra("nncf", "nncf", "fast", "int8 precision")
    fp32 = _openvino_ir(emb, ov)

    def write(path: Path):
        import contextlib
        import io
        import logging

        pixels = calibration if calibration is not None and len(calibration) else probe_pixels(emb.prepare, n=48, seed=1)
        nncf.set_log_level(logging.ERROR)
        model = ov.Core().read_model(str(fp32))
        dataset = nncf.Dataset([pixels[i : i + 1] for i in range(len(pixels))])
        # NNCF draws a progress bar on stdout, which belongs to the caller (search --json prints JSON there).
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            quantized = nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.MIXED, subset_size=len(pixels))
        ov.save_model(quantized, str(path), compress_to_fp16=False)
        write_json_atomic(path.parent / "calibration.json", {"images": len(pixels), "source": "catalog" if calibration is not None else "generated"})

    return cached_model(emb, "openvino", "int8", "model.xml", write)


class _Compiled:
    """One precision of the model, compiled twice, lazily: for latency (one request using every core:
    queries) and for throughput (one stream per core, run in parallel: batches, ~1.4x faster).
    Not thread-safe: the runner serialises calls."""

    def __init__(self, core, ov, path: Path, precision: str):
        self.core, self.ov, self.path = core, ov, path
        # int8: the quantized operations run int8 whatever the hint; the rest stays fp32.
        self.hint = "bf16" if precision == "bf16" else "f32"
        self.request = self._compile("LATENCY").create_infer_request()
        self._queue = None

    def _compile(self, hint: str):
        return self.core.compile_model(str(self.path), "CPU", {"INFERENCE_PRECISION_HINT": self.hint, "PERFORMANCE_HINT": hint})

    def _throughput_queue(self):
        if self._queue is None:
            compiled = self._compile("THROUGHPUT")
            queue = self.ov.AsyncInferQueue(compiled, max(1, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            results: dict[int, np.ndarray] = {}
            queue.set_callback(lambda request, part: results.__setitem__(part, request.get_output_tensor(0).data.copy()))
            self._queue = (queue, results)
        return self._queue

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        if len(pixels) < 4:
            out = np.array(self.request.infer({0: pixels}, share_inputs=True)[0], dtype=np.float32, copy=True)  # the buffer is reused
        else:
            queue, results = self._throughput_queue()
            parts = np.array_split(pixels, min(len(queue), len(pixels)))
            results.clear()
            for i, part in enumerate(parts):
                queue.start_async({0: part}, i)
            queue.wait_all()
            out = np.concatenate([results[i] for i in range(len(parts))]).astype(np.float32, copy=False)
        # A quantized graph's own L2 step is approximate (norms 0.998-1.32 measured): unit vectors again.
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


class OpenVINORunner:
    """The embedding network in OpenVINO, in one precision: fp32, bf16 or int8, or ``auto``: the fastest
    one that keeps fp32's retrieval quality (``models.precision``), measured once per model and CPU on a
    probe (``settle``: a build's catalog images; else generated pictures on the first call) and cached.
    ``record`` says what was chosen and why (the manifest keeps it). Calls are serialised."""

    def __init__(self, emb, precision: str | None = None):
        if not emb.device.startswith("cpu"):
            raise InvalidArgumentError(f"The OpenVINO runtime runs on the CPU; device {emb.device!r} needs runtime='torch' (CLI: --runtime torch).", code="bad_option")
        self.emb = emb
        self.ov = ov = _import_openvino()
        self.core = core = ov.Core()
        core.set_property({"CACHE_DIR": str(emb.settings.cache_path / "compiled" / "openvino-blobs")})
        self.model_path = _openvino_ir(emb, ov)
        self.asked = canonical(precision or emb.settings.precision)
        if self.asked not in PRECISIONS:
            raise InvalidArgumentError(f"Unknown precision '{self.asked}'. Choose one of: {', '.join(PRECISIONS)} (f32 = fp32).", code="bad_option")
        self.lock = threading.Lock()
        self.compiled: _Compiled | None = None
        self.record: dict | None = None
        if self.asked == "auto":
            cached = self._cached_decision()
            if cached is not None:
                self._take(cached)
        elif self.asked != "int8":  # int8 waits for settle() or the first call: a build calibrates it on its catalog
            self._take({"chosen": self.asked, "asked": self.asked, "cpu": cpu_name()})

    @property
    def precision(self) -> str:
        return self.record["chosen"] if self.record else self.asked

    @property
    def name(self) -> str:
        return f"openvino-{self.precision}"

    def _compile(self, precision: str, calibration=None) -> _Compiled:
        if precision == "bf16" and not _native_bf16(self.core):
            warnings.warn("This CPU has no native bf16; OpenVINO emulates it slowly. Use precision fp32.", stacklevel=3)
        path = _openvino_int8_ir(self.emb, self.ov, calibration) if precision == "int8" else self.model_path
        return _Compiled(self.core, self.ov, path, precision)

    def _take(self, record: dict, compiled: _Compiled | None = None, calibration=None) -> None:
        self.compiled = compiled or self._compile(record["chosen"], calibration)
        self.record = record

    def _decision_path(self) -> Path:
        key = cache_key(self.emb, "openvino", f"precision:{cpu_name()}")
        return self.emb.settings.cache_path / "precision" / f"openvino-{self.emb.spec.name}-{key}.json"

    def _cached_decision(self, source: str | None = None, images: int = 0) -> dict | None:
        """The decision cached for this model and CPU, unless the probe at hand is better evidence: a
        catalog's images over generated pictures, a larger catalog probe over a smaller one."""
        try:
            record = json.loads(self._decision_path().read_text())
        except (OSError, ValueError):
            return None
        probe = record.get("probe", {})
        if source == "catalog" and (probe.get("source") != "catalog" or probe.get("images", 0) < images):
            return None
        return record

    def settle(self, probe: np.ndarray | None = None, labels=None, calibration: np.ndarray | None = None,
               source: str = "catalog", remeasure: bool = False) -> dict:
        """Decide ``auto`` on ``probe`` (uint8 network inputs; ``labels``: one per image, or None) unless
        a decision measured on a catalog is cached (``remeasure``: measure anyway); a forced int8 is
        calibrated on ``calibration``."""
        with self.lock:
            return self._settle(probe, labels, calibration, source, remeasure)

    def _settle(self, probe, labels, calibration, source, remeasure=False) -> dict:
        if self.asked != "auto":
            if self.compiled is None:
                self._take({"chosen": self.asked, "asked": self.asked, "cpu": cpu_name()}, calibration=calibration)
            return self.record
        n = 0 if probe is None else len(probe)
        held = (self.record or {}).get("probe", {})
        if not remeasure and self.record is not None and (source != "catalog" or (held.get("source") == "catalog" and held.get("images", 0) >= n)):
            return self.record
        cached = None if remeasure else self._cached_decision(source, n)
        if cached is not None:
            self._take(cached)
            return cached
        if probe is None or len(probe) < 8:
            probe, labels, source = probe_pixels(self.emb.prepare, n=64), None, "generated"
        record, compiled = measure_precisions(self, probe, labels, calibration, source)
        path = self._decision_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, record)
        self._take(record, compiled.get(record["chosen"]))
        return record

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        with self.lock:
            if self.compiled is None:
                self._settle(None, None, None, "generated")
            return self.compiled(pixels)


def measure_precisions(runner: OpenVINORunner, probe: np.ndarray, labels, calibration, source: str) -> tuple[dict, dict]:
    """Every candidate precision on the probe: quality against fp32, speed (img/s in batches of 32, ms
    at batch 1), and the choice by ``models.precision.choose``. A candidate that cannot run here is
    recorded with why."""
    measured: dict[str, dict] = {}
    compiled: dict[str, _Compiled] = {}
    reference = None
    for name in CANDIDATES:
        try:
            if name == "bf16" and not _native_bf16(runner.core):
                raise RuntimeError("no native bf16 on this CPU (emulated: slower than fp32)")
            model = runner._compile(name, calibration)
            vectors = model(probe)
        except Exception as exc:  # a missing extra (nncf) or a failed compile: the next candidate, recorded why
            if name == "fp32":
                raise
            measured[name] = {"passes": False, "why": f"unavailable: {_one_line(exc)}"}
            continue
        reference = vectors if reference is None else reference
        q = quality(vectors, reference, labels, runner.emb.settings.vote_temperature)
        passes, why = (True, "the reference") if name == "fp32" else keeps_quality(q, measured["fp32"])
        measured[name] = {**q, "passes": passes, "why": why}
        compiled[name] = model
    for name, speed in _speeds(compiled, probe).items():
        measured[name].update(speed)
    record = {"chosen": choose(measured), "asked": "auto", "cpu": cpu_name(), "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "probe": {"source": source, "images": len(probe), "labelled": labels is not None,
                        "calibration": None if calibration is None else len(calibration)},
              "rule": {"min_relative": MIN_RELATIVE, "min_recall_at_10": MIN_RECALL, "min_cosine": MIN_COSINE},
              "candidates": measured}
    return record, compiled


def _speeds(models: dict, probe: np.ndarray, rounds: int = 3) -> dict[str, dict]:
    """Best of ``rounds`` interleaved timings per model: on a shared machine another process may take the
    cores while one candidate runs; the fastest round is the least disturbed, and interleaving gives
    every candidate the same chances."""
    batch = probe[:32]
    best = {name: [np.inf, np.inf] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            started = time.perf_counter()
            model(batch)
            best[name][0] = min(best[name][0], time.perf_counter() - started)
            started = time.perf_counter()
            for i in range(4):
                model(probe[i : i + 1])
            best[name][1] = min(best[name][1], (time.perf_counter() - started) / 4)
    return {name: {"img_s": round(len(batch) / b, 1), "batch1_ms": round(b1 * 1000, 1)} for name, (b, b1) in best.items()}


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:240]


def openvino_runner(emb, precision: str | None = None):
    return OpenVINORunner(emb, precision)


# ---- ONNX Runtime ---------------------------------------------------------------------------
def onnx_runner(emb):
    ort = import_extra("onnxruntime", "onnxruntime", "fast", "The ONNX Runtime runtime")
    if not emb.device.startswith("cpu"):
        raise InvalidArgumentError(f"The onnx runtime runs on the CPU here; device {emb.device!r} needs runtime='torch' (CLI: --runtime torch).", code="bad_option")

    def write(path: Path):
        import torch

        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter (dynamo=False) is the one that exports this model as it is; its
            # deprecation notices and constant-folding remarks say nothing a user can act on.
            warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript-based ONNX export", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=r"The feature will be removed", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=r"Constant folding - Only steps=1", category=UserWarning)
            torch.onnx.export(emb.net, (_example_input(emb),), str(path), input_names=["pixels"], output_names=["vectors"],
                              dynamic_axes={"pixels": {0: "batch"}, "vectors": {0: "batch"}}, opset_version=17, dynamo=False)

    path = cached_model(emb, "onnx", "fp32", "model.onnx", write)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(pixels: np.ndarray) -> np.ndarray:
        return session.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.uint8)})[0]

    return run


# ---- torch and the registry ----------------------------------------------------------------
def torch_runner(emb):
    import torch

    net = emb.net.to(emb.device).to(memory_format=torch.channels_last)
    device = emb.device

    def run(pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(pixels)).to(device, non_blocking=True)
            if device.startswith("cuda"):
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    return net(x).float().cpu().numpy()
            return net(x).numpy()

    return run


# Runtimes by name. "auto" takes the first one in AUTO_ORDER that is installed and supports the device.
RUNTIMES = {"torch": torch_runner, "openvino": openvino_runner, "onnx": onnx_runner}
AUTO_ORDER = ["openvino", "onnx", "torch"]


def select_runtime(emb, runtime: str):
    """(name, run) of ``runtime`` for ``emb``; 'auto' falls back along AUTO_ORDER to torch."""
    if runtime == "auto":
        for name in AUTO_ORDER:
            if emb.device != "cpu" and name != "torch":
                continue
            try:
                run = RUNTIMES[name](emb)
            except MissingExtraError:
                continue
            except Exception as exc:  # a converter failing on this model must not stop search: torch still works
                if name == "torch":
                    raise
                warnings.warn(f"The {name} runtime could not load this model ({type(exc).__name__}: {exc}); using the next one.", stacklevel=3)
                continue
            return getattr(run, "name", name), run
        raise AssertionError("the torch runtime is always available")
    if runtime not in RUNTIMES:
        raise InvalidArgumentError(f"Unknown runtime '{runtime}'. Choose auto or one of: {', '.join(RUNTIMES)}.", code="bad_option")
    run = RUNTIMES[runtime](emb)
    return getattr(run, "name", runtime), run
