"""Shopper-like composites: the cut-out, deterministic pasting with true boxes, the benchmark on disk."""

import csv

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imagegen import on_white, product_picture
from stylelens.item.composite import (VARIANTS, Item, background, compose, cut, cutout, make_variant, mask_box, read_labels,
                                 write_benchmark)
from stylelens.errors import InvalidArgumentError

COLOURS = [(200, 30, 40), (30, 60, 200), (40, 160, 60), (20, 20, 20), (230, 180, 20)]
CATEGORIES = ["Topwear", "Bottomwear", "Shoes", "Bags"]


def shot(seed: int, colour=(200, 30, 40), size=(60, 80)) -> tuple[np.ndarray, np.ndarray]:
    """A generated product on white (RGB array) and its true silhouette, holes (a bag's handle) filled."""
    rgba = product_picture(size, colour, pattern_seed=seed)
    alpha = rgba.getchannel("A").point(lambda v: 255 if v > 127 else 0)
    outside = Image.new("L", (size[0] + 2, size[1] + 2), 0)
    outside.paste(alpha, (1, 1))
    ImageDraw.floodfill(outside, (0, 0), 128)  # the backdrop is what the border reaches
    return np.asarray(on_white(rgba)), np.asarray(outside)[1:-1, 1:-1] != 128


@pytest.mark.parametrize("seed", range(6))
def test_cutout_recovers_the_silhouette(seed):
    rgb, truth = shot(seed, COLOURS[seed % len(COLOURS)])
    mask = cutout(rgb)
    assert (mask != truth).mean() < 0.02
    assert mask_box(mask) == mask_box(truth)


def test_cutout_keeps_white_holes_inside_the_product_and_drops_specks():
    rgb, truth = shot(0)
    rgb = rgb.copy()
    rgb[38:44, 26:34] = 255  # a white logo inside the shirt: not reachable from the border
    rgb[2, 2] = (0, 0, 0)  # a dust speck on the backdrop
    mask = cutout(rgb)
    assert mask[38:44, 26:34].all()
    assert not mask[2, 2]
    assert (mask != truth).mean() < 0.02


def test_cutout_of_a_white_product_never_comes_back_empty():
    rgb = np.full((80, 60, 3), 255, np.uint8)
    rgb[10:70, 15:45] = 250  # barely off-white
    mask = cutout(rgb)
    assert mask.sum() > 0.02 * mask.size


def test_cut_crops_to_the_mask_box(tmp_path):
    rgb, truth = shot(3)
    Image.fromarray(rgb).save(tmp_path / "p.png")
    item = cut(tmp_path / "p.png")
    x, y, w, h = mask_box(truth)
    assert item.rgb.shape == (h, w, 3) and item.mask.shape == (h, w)


@pytest.mark.parametrize("kind", ["solid", "gradient", "wood", "fabric", "bedsheet", "pattern"])
def test_backgrounds_are_deterministic_and_textured_where_named(kind):
    a = background(np.random.default_rng(1), (120, 90), kind)
    assert a.shape == (90, 120, 3) and a.dtype == np.uint8
    assert np.array_equal(a, background(np.random.default_rng(1), (120, 90), kind))
    if kind in ("wood", "fabric", "pattern"):
        assert a.std() > 8


def block_item(colour=(0, 255, 0), w=30, h=40) -> Item:
    return Item(np.full((h, w, 3), colour, np.uint8), np.ones((h, w), bool))


def test_compose_is_deterministic_for_a_seed():
    items = [Item(*(lambda s: (s[0], s[1]))(shot(1)))]
    first = compose(items, np.random.default_rng(7), tilt=10, relight=True, blur=1.0, jpeg=40)
    again = compose(items, np.random.default_rng(7), tilt=10, relight=True, blur=1.0, jpeg=40)
    other = compose(items, np.random.default_rng(8), tilt=10, relight=True, blur=1.0, jpeg=40)
    assert np.array_equal(np.asarray(first.image), np.asarray(again.image)) and first.boxes == again.boxes
    assert not np.array_equal(np.asarray(first.image), np.asarray(other.image))


@pytest.mark.parametrize("layout,scale", [("centre", (0.7, 0.7)), ("offcentre", (0.4, 0.4))])
def test_the_box_is_where_the_item_was_pasted(layout, scale):
    for seed in range(5):
        photo = compose([block_item()], np.random.default_rng(seed), size=(240, 320), scale=scale, layout=layout,
                        backdrop="pattern")
        img = np.asarray(photo.image).astype(int)
        green = (img[..., 1] > 200) & (img[..., 0] < 60) & (img[..., 2] < 60)
        x, y, w, h = photo.boxes[0]
        gx, gy, gw, gh = mask_box(green)
        assert abs(gx - x) <= 1 and abs(gy - y) <= 1 and abs(gw - w) <= 2 and abs(gh - h) <= 2
        # 30x40 scaled so the box spans `scale` of the 320 px height
        assert abs(h - scale[0] * 320) <= 2
        if layout == "offcentre":
            cx, cy = x + w / 2, y + h / 2
            assert max(abs(cx - 120) / (120 - w / 2), abs(cy - 160) / (160 - h / 2)) >= 0.55
        assert 0 <= x and x + w <= 240 and 0 <= y and y + h <= 320


def test_multi_item_boxes_are_separate_and_labelled():
    items = [block_item((0, 255, 0), 20, 40), block_item((255, 0, 255), 40, 30), block_item((0, 0, 255), 30, 30)]
    photo = make_variant("multi-3", items, np.random.default_rng(0))
    assert len(photo.boxes) == 3
    for i, box in enumerate(photo.boxes):
        assert mask_box(photo.labels == i + 1) == box
    xs = [b[0] for b in photo.boxes]
    assert xs == sorted(xs)  # one slot each, left to right


def test_distractors_are_behind_the_target_and_reported():
    photo = make_variant("distractors", [block_item()], np.random.default_rng(0),
                         [block_item((255, 0, 0)), block_item((0, 0, 255))])
    assert len(photo.boxes) == 1 and 1 <= len(photo.distractor_boxes) <= 2
    assert (photo.labels == 1).sum() == photo.boxes[0][2] * photo.boxes[0][3]  # nothing covers the target


def test_make_variant_checks_its_arguments():
    with pytest.raises(InvalidArgumentError):
        make_variant("nope", [block_item()], np.random.default_rng(0))
    with pytest.raises(InvalidArgumentError):
        make_variant("multi-2", [block_item()], np.random.default_rng(0))


def write_shop(folder, n=12):
    """n generated products on white in folder/images, with a styles.csv of four categories."""
    (folder / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        pid = str(100 + i)
        rgb, _ = shot(i, COLOURS[i % len(COLOURS)])
        Image.fromarray(rgb).save(folder / "images" / f"{pid}.jpg", quality=95)
        rows.append({"id": pid, "gender": "Women" if i % 2 else "Men", "masterCategory": "Apparel",
                     "subCategory": CATEGORIES[i % 4], "articleType": f"Type{i % 4}", "baseColour": f"C{i % 5}"})
    with open(folder / "styles.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return {r["id"]: r for r in rows}


def test_write_benchmark_writes_one_photo_per_variant_and_a_row_per_item(tmp_path):
    rows = write_shop(tmp_path / "shop")
    ids = ["100", "101", "102"]
    labels_path = write_benchmark(tmp_path / "shop", tmp_path / "bench", ids, seed=0, pool=list(rows))
    labels = read_labels(labels_path)
    per_variant = {v: [r for r in labels if r["variant"] == v] for v in VARIANTS}
    for name, spec in VARIANTS.items():
        assert len(per_variant[name]) == len(ids) * spec.targets, name
        assert {r["id"] for r in per_variant[name]} == {f"{name}-{i}" for i in ids}
    for r in labels:
        img = Image.open(tmp_path / "bench" / "images" / f"{r['id']}.jpg")
        x, y, w, h = r["box"]
        assert w > 0 and h > 0 and x + w <= img.width and y + h <= img.height
        product = rows[r["product_id"]]
        assert (r["articleType"], r["gender"], r["baseColour"]) == (product["articleType"], product["gender"], product["baseColour"])
    for r in per_variant["multi-3"]:
        if r["id"] == "multi-3-100":
            assert r is per_variant["multi-3"][0] or r["product_id"] != "100"
    for stem in {r["id"] for r in per_variant["multi-3"]}:
        cats = [rows[r["product_id"]]["subCategory"] for r in labels if r["id"] == stem]
        assert len(set(cats)) == 3 and stem.endswith("-" + [r["product_id"] for r in labels if r["id"] == stem][0])
    # the catalog variant is the shot itself, byte for byte
    assert (tmp_path / "bench" / "images" / "catalog-100.jpg").read_bytes() == (tmp_path / "shop" / "images" / "100.jpg").read_bytes()
    with open(labels_path, newline="") as fh:
        assert next(csv.reader(fh)) == ["id", "product_id", "variant", "articleType", "gender", "baseColour", "box"]


def test_write_benchmark_is_reproducible(tmp_path):
    write_shop(tmp_path / "shop")
    a = write_benchmark(tmp_path / "shop", tmp_path / "a", ["100", "101"], seed=3, variants=["small-offcentre", "multi-2"])
    b = write_benchmark(tmp_path / "shop", tmp_path / "b", ["101"], seed=3, variants=["small-offcentre"], pool=["100", "101"])
    assert (tmp_path / "a" / "images" / "small-offcentre-101.jpg").read_bytes() == (tmp_path / "b" / "images" / "small-offcentre-101.jpg").read_bytes()
    assert len(read_labels(a)) == 2 + 4 and len(read_labels(b)) == 1
