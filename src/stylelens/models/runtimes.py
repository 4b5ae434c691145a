"""The runtimes that run the one ``EmbeddingNet``: torch (any device), OpenVINO (bf16 where it keeps
parity) and ONNX Runtime.

A runtime is a function ``make(emb) -> run(uint8 NHWC) -> float32 (N, dim) unit vectors``; ``RUNTIMES``
below lists them by name and ``AUTO_ORDER`` is the order ``runtime='auto'`` tries. ``emb`` is the
embedder, taken as it is (its ``net``, ``device``, ``preprocess``, ``fingerprint()``, ``prepare()`` and
``settings``): this module does not import the embedder. The fast runtimes convert ``emb.net`` once and
keep the converted model in ``<cache_dir>/compiled/<key>/`` (key: hash of the embedder fingerprint,
runtime and library versions).

Precision ``auto`` uses bf16 only where the CPU has it natively *and* the bf16 model passes the
parity bar against torch fp32 on a fixed probe set (checked once per model, cached); else f32.
int8 (NNCF post-training quantization) was measured and left out: it misses the bar by far.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

from ..errors import InvalidArgumentError, MissingExtraError, import_extra
from ..files import write_json_atomic

CACHE_FORMAT = 1
PRECISIONS = ("auto", "f32", "bf16")
# The bar a fast runtime must meet against torch fp32 (tests and the benchmark check it).
PARITY_MIN_COSINE = 0.999
PARITY_MIN_TOP5_SAME = 0.95


# ---- cache ----------------------------------------------------------------------------------
def cache_key(emb, runtime: str, variant: str) -> str:
    import torch

    versions = {"torch": torch.__version__, "stylelens": _stylelens_version()}
    for module in ("openvino", "onnxruntime"):
        versions[module] = _version_of(module)
    blob = json.dumps({"format": CACHE_FORMAT, "runtime": runtime, "variant": variant,
                       "fingerprint": emb.fingerprint(), "versions": versions}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _stylelens_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stylelens")
    except PackageNotFoundError:
        return "dev"


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


def cpu_supports_bf16() -> bool:
    """True when OpenVINO reports native bf16 on this CPU (AVX512-BF16 or AMX)."""
    ov = _import_openvino()
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _openvino_ir(emb, ov) -> Path:
    size = emb.preprocess.size

    def write(path: Path):
        with warnings.catch_warnings():
            # OpenVINO traces the model with torch.jit.trace, which torch now announces as deprecated.
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated", category=FutureWarning)
            model = ov.convert_model(emb.net, example_input=_example_input(emb))
        model.reshape([-1, size, size, 3])  # any batch size
        ov.save_model(model, str(path), compress_to_fp16=False)

    return cached_model(emb, "openvino", "fp32", "model.xml", write)


def probe_pixels(prepare, n: int = 48, seed: int = 0) -> np.ndarray:
    """Deterministic product-like pictures (a textured garment shape on white), made network-ready by
    ``prepare(PIL image) -> uint8 array`` (an embedder's ``prepare``)."""
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


def bf16_check(emb, core, ir: Path) -> dict:
    """Parity of the bf16-compiled model against torch fp32 on the probe set; computed once, cached."""
    record = ir.parent / "bf16-check.json"
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):
        pass
    probe = probe_pixels(emb.prepare)
    reference = torch_runner(emb)(probe)
    compiled = core.compile_model(str(ir), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    result = parity(np.concatenate([compiled(probe[i : i + 16])[0] for i in range(0, len(probe), 16)]), reference,
                    queries=len(probe))
    write_json_atomic(record, result)
    return result


def resolve_precision(emb, core, ir: Path, precision: str | None) -> str:
    precision = precision or emb.settings.precision
    if precision not in PRECISIONS:
        raise InvalidArgumentError(f"Unknown precision '{precision}'. Choose one of: {', '.join(PRECISIONS)}.", code="bad_option")
    if precision != "auto":
        return precision
    if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return "f32"
    return "bf16" if bf16_check(emb, core, ir)["passes"] else "f32"


class OpenVINORunner:
    """The converted model compiled twice, lazily: for latency (one request using every core: queries)
    and for throughput (one stream per core, run in parallel: batches while indexing, ~1.4x faster).
    Calls are serialised; an infer request is not thread-safe."""

    def __init__(self, emb, precision: str | None = None):
        if not emb.device.startswith("cpu"):
            raise InvalidArgumentError(f"The OpenVINO runtime runs on the CPU; device {emb.device!r} needs runtime='torch' (CLI: --runtime torch).", code="bad_option")
        ov = _import_openvino()
        self.ov = ov
        self.core = core = ov.Core()
        core.set_property({"CACHE_DIR": str(emb.settings.cache_path / "compiled" / "openvino-blobs")})
        self.model_path = ir = _openvino_ir(emb, ov)
        self.precision = resolve_precision(emb, core, ir, precision)
        if self.precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            warnings.warn("This CPU has no native bf16; OpenVINO emulates it slowly. Use precision f32.", stacklevel=2)
        self.request = self._compile("LATENCY").create_infer_request()
        self._queue = None
        self.lock = threading.Lock()
        self.name = f"openvino-{self.precision}"

    def _compile(self, hint: str):
        return self.core.compile_model(str(self.model_path), "CPU", {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": hint})

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
        with self.lock:
            if len(pixels) < 4:
                out = self.request.infer({0: pixels}, share_inputs=True)[0]
                return np.array(out, dtype=np.float32, copy=True)  # the request's buffer is reused next call
            queue, results = self._throughput_queue()
            parts = np.array_split(pixels, min(len(queue), len(pixels)))
            results.clear()
            for i, part in enumerate(parts):
                queue.start_async({0: part}, i)
            queue.wait_all()
            return np.concatenate([results[i] for i in range(len(parts))]).astype(np.float32, copy=False)


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


# ---- parity ---------------------------------------------------------------------------------
def parity(fast: np.ndarray, reference: np.ndarray, queries: int = 100, k: int = 5) -> dict:
    """How closely ``fast`` vectors follow ``reference`` (torch fp32) vectors of the same images.

    Per image: cosine between the two vectors. Per query (the first ``queries`` images): its top-k
    neighbours among all the images (itself excluded), once in each space; "identical" means the same
    ids in the same order.
    """
    fast = np.asarray(fast, np.float32)
    reference = np.asarray(reference, np.float32)
    cos = np.sum(fast * reference, axis=1)
    q = min(queries, len(fast))

    def topk(v):
        scores = v[:q] @ v.T
        scores[np.arange(q), np.arange(q)] = -np.inf
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]

    a, b = topk(fast), topk(reference)
    identical = float(np.mean(np.all(a == b, axis=1))) if q else 1.0
    same_set = float(np.mean([set(x) == set(y) for x, y in zip(a, b)])) if q else 1.0
    return {
        "images": len(fast),
        "queries": q,
        "cosine_min": round(float(cos.min()), 6) if len(cos) else 1.0,
        "cosine_mean": round(float(cos.mean()), 6) if len(cos) else 1.0,
        f"top{k}_identical": round(identical, 4),
        f"top{k}_same_set": round(same_set, 4),
        "passes": bool(len(cos) == 0 or (cos.min() >= PARITY_MIN_COSINE and identical >= PARITY_MIN_TOP5_SAME)),
    }


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
