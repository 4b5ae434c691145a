"""Heat maps from the frozen backbone's feature maps, for ``item.localise``: SCDA and a trained cell head.

``BackboneMaps(embedder)`` gives the backbone's stride-16 and last feature maps of a photo (letterboxed as
the embedder prepares it); ``scda_map`` and ``HeatmapHead`` turn them into the heat map ``item.localise``
reads (see there for which is the default and why). ``BackboneMaps(embedder, strides=(8, 16, 32))`` gives
the last map at each of those strides instead (the garment parser's decoder reads them, ``models.parser``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ..errors import InvalidArgumentError, WeightsError
from ..item.localise import Heatmap

class BackboneMaps:
    """The frozen backbone's feature maps of a photo: ``maps(rgb) -> [stride-16 map, last map]`` (C, h, w).

    With ``strides`` (e.g. ``(8, 16, 32)``), the output of the last stage at each of those strides, in that
    order (the largest stride's is the last map). The photo is letterboxed exactly as the embedder prepares
    it (``size`` px, white pad); the maps are cut back to the photo's part of the square. Built from an
    ``Embedder``'s torch network; runs in OpenVINO when it is installed (``runtime='auto'``), else torch;
    ``precision`` is OpenVINO's inference precision hint ("f32", or "bf16": f32 where the CPU has no native bf16).
    """

    def __init__(self, embedder, size: int | None = None, runtime: str = "auto", strides: Sequence[int] | None = None,
                 precision: str = "f32"):
        import dataclasses

        import torch

        pre = embedder.preprocess
        self.pre = dataclasses.replace(pre, size=size or pre.size)
        self.module = _split_net(embedder.net.trunk, pre, strides).eval()
        n_out = len(strides) if strides else 2
        self._run = None
        if runtime in ("auto", "openvino"):
            try:
                import openvino as ov

                from .runtimes import _native_bf16, openvino_convert

                example = torch.zeros((1, self.pre.size, self.pre.size, 3), dtype=torch.uint8)
                model = openvino_convert(ov, self.module, example)
                core = ov.Core()
                if precision == "bf16" and not _native_bf16(core):
                    precision = "f32"  # emulated bf16 is slower than f32
                compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision})
                request = compiled.create_infer_request()

                def run(pixels):
                    out = request.infer({0: pixels})
                    return [np.asarray(out[compiled.output(i)]) for i in range(n_out)]

                self._run, self.runtime = run, "openvino"
            except ImportError:
                if runtime == "openvino":
                    raise
        if self._run is None:
            def run(pixels):
                with torch.inference_mode():
                    return [t.numpy() for t in self.module(torch.from_numpy(pixels))]

            self._run, self.runtime = run, "torch"

    def __call__(self, rgb: np.ndarray) -> list[np.ndarray]:
        # Letterboxed on white as the embedder prepares its input, so the maps see what it sees.
        h, w = rgb.shape[:2]
        size = self.pre.size
        s = size / max(w, h)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        x0, y0 = (size - nw) // 2, (size - nh) // 2
        pixels = np.full((1, size, size, 3), 255, np.uint8)
        pixels[0, y0 : y0 + nh, x0 : x0 + nw] = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.Resampling.BILINEAR))
        maps = []
        for fmap in self._run(np.ascontiguousarray(pixels)):
            fmap = fmap[0]
            g = fmap.shape[-1] / size  # cells per pixel
            # Cells mostly inside the photo (the map is then off by under half a cell at the edges).
            cx0, cy0 = int(round(x0 * g)), int(round(y0 * g))
            cx1, cy1 = max(cx0 + 1, int(round((x0 + nw) * g))), max(cy0 + 1, int(round((y0 + nh) * g)))
            maps.append(fmap[:, cy0:cy1, cx0:cx1])
        return maps


def _split_net(trunk, pre, strides: Sequence[int] | None = None):
    """uint8 NHWC -> normalise -> (stride-16 map, last map), or the last map at each of ``strides``, for
    the registered CNN trunks."""
    import torch

    if hasattr(trunk, "net") and hasattr(trunk.net, "_blocks"):  # EfficientNet-Lite
        net = trunk.net
        stem = lambda x: net._swish(net._bn0(net._conv_stem(x)))  # noqa: E731
        head = lambda x: net._swish(net._bn1(net._conv_head(x)))  # noqa: E731
        stages = [stem, *list(net._blocks), head]
    elif isinstance(trunk, torch.nn.Sequential):  # ResNet: conv1 .. layer4
        stages = list(trunk.children())
    else:
        raise InvalidArgumentError("BackboneMaps knows the EfficientNet and ResNet trunks only.", code="bad_option")
    # The last stage at each stride, found by running a blank image through.
    last_at: dict[int, int] = {}
    with torch.no_grad():
        x = torch.zeros(1, 3, 64, 64)
        for i, stage in enumerate(stages):
            x = stage(x)
            last_at[64 // x.shape[-1]] = i
    if strides is None:
        if 16 not in last_at:
            raise InvalidArgumentError("The backbone has no stride-16 stage.", code="bad_option")
        taps = [last_at[16], len(stages) - 1]
    else:
        missing = [s for s in strides if s not in last_at]
        if missing:
            raise InvalidArgumentError(f"The backbone has no stage at stride {missing}; it has {sorted(last_at)}.", code="bad_option")
        taps = [last_at[s] for s in strides]
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(pre.std).view(1, 3, 1, 1) * 255.0

    class Maps(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mods = torch.nn.ModuleList([s for s in stages if isinstance(s, torch.nn.Module)])
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)

        def forward(self, pixels):
            x = (pixels.permute(0, 3, 1, 2).float() - self.mean) / self.std
            out = {}
            for i, stage in enumerate(stages[: max(taps) + 1]):
                x = stage(x)
                if i in taps:
                    out[i] = x
            return tuple(out[t] for t in taps)

    return Maps()


def scda_map(maps: Callable[[np.ndarray], list[np.ndarray]]) -> Heatmap:
    """SCDA: the last feature map summed over channels; above its mean is the object (0.5 = the mean)."""

    def heat(rgb: np.ndarray) -> np.ndarray:
        a = maps(rgb)[-1].sum(axis=0)
        return np.clip(a / (2 * max(float(a.mean()), 1e-6)), 0, 1)

    return heat


class HeatmapHead:
    """A tiny MLP on each cell of the backbone's maps (stride-16 map + the last map upsampled):
    the share of the cell that is a product. Trained here on composites; weights in an npz."""

    def __init__(self, maps: Callable[[np.ndarray], list[np.ndarray]], params: dict[str, np.ndarray]):
        self.maps = maps
        self.params = {k: np.asarray(v, np.float32) for k, v in params.items()}

    @staticmethod
    def cell_features(fmaps: Sequence[np.ndarray]) -> np.ndarray:
        """(h*w, C) features of the stride-16 grid: the mid map, and the last map repeated 2x2."""
        mid, last = fmaps[0], fmaps[-1]
        h, w = mid.shape[1:]
        up = last.repeat(2, axis=1).repeat(2, axis=2)
        up = np.pad(up, ((0, 0), (0, max(0, h - up.shape[1])), (0, max(0, w - up.shape[2]))), mode="edge")[:, :h, :w]
        return np.concatenate([mid, up], axis=0).reshape(mid.shape[0] + last.shape[0], -1).T

    def predict(self, feats: np.ndarray) -> np.ndarray:
        p = self.params
        z = (feats - p["mean"]) / p["std"]
        hidden = np.maximum(z @ p["w1"] + p["b1"], 0)
        return 1 / (1 + np.exp(-(hidden @ p["w2"] + p["b2"])[:, 0]))

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        fmaps = self.maps(rgb)
        return self.predict(self.cell_features(fmaps)).reshape(fmaps[0].shape[1:])

    def save(self, path) -> None:
        np.savez(path, **self.params)

    @classmethod
    def load(cls, path, maps) -> "HeatmapHead":
        try:
            with np.load(path, allow_pickle=False) as data:
                params = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise WeightsError(f"Could not read localiser weights {path} ({exc}). Train them again with HeatmapHead.train.") from exc
        missing = {"mean", "std", "w1", "b1", "w2", "b2"} - set(params)
        if missing:
            raise WeightsError(f"Localiser weights {path} lack {sorted(missing)}. Train them again with HeatmapHead.train.")
        return cls(maps, params)

    @classmethod
    def train(cls, maps, photos: Sequence[tuple[np.ndarray, np.ndarray]], hidden: int = 32, epochs: int = 30,
              seed: int = 0) -> "HeatmapHead":
        """Fit on (rgb, product mask) pairs, e.g. composites (mask = labels > 0). CPU, seconds to minutes."""
        import torch

        xs, ys = [], []
        for rgb, mask in photos:
            fmaps = maps(rgb)
            xs.append(cls.cell_features(fmaps))
            h, w = fmaps[0].shape[1:]
            cover = Image.fromarray(mask.astype(np.float32)).resize((w, h), Image.Resampling.BOX)
            ys.append(np.asarray(cover, np.float32).reshape(-1))
        x, y = np.concatenate(xs), np.clip(np.concatenate(ys), 0, 1)
        mean, std = x.mean(0), x.std(0) + 1e-3
        gen = torch.Generator().manual_seed(seed)
        xt, yt = torch.from_numpy((x - mean) / std), torch.from_numpy(y)
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
        opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-3)
        for _ in range(epochs):
            for idx in torch.randperm(len(xt), generator=gen).split(512):
                opt.zero_grad()
                loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xt[idx])[:, 0], yt[idx])
                loss.backward()
                opt.step()
        w1, w2 = net[0], net[2]
        params = {"mean": mean, "std": std, "w1": w1.weight.detach().numpy().T, "b1": w1.bias.detach().numpy(),
                  "w2": w2.weight.detach().numpy().T, "b2": w2.bias.detach().numpy()}
        return cls(maps, params)
