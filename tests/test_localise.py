"""Localisation on generated composites: boxes over the true items, shots on white untouched, typed errors."""

import numpy as np
import pytest
from PIL import Image

from imagegen import on_white, product_picture
from stylelens.item.composite import Item, cut, make_variant, mask_box
from stylelens.errors import ImageError, InvalidArgumentError, WeightsError
from stylelens.item.localise import Box, contrast_map, crop, grabcut_map, iou, locate
from stylelens.models.localiser import BackboneMaps, HeatmapHead, scda_map

COLOURS = [(200, 30, 40), (30, 60, 200), (40, 160, 60), (20, 20, 20), (230, 180, 20), (120, 40, 160)]


def product(seed: int) -> Item:
    return cut(on_white(product_picture((60, 80), COLOURS[seed % len(COLOURS)], pattern_seed=seed)))


def photos(variant: str, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    spec = {"textured-70": 1, "small-offcentre": 1, "textured-70-degraded": 1, "multi-2": 2, "multi-3": 3}[variant]
    for i in range(n):
        yield make_variant(variant, [product(i * 3 + j) for j in range(spec)], rng)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou(Box(0, 0, 4, 4), (10, 10, 4, 4)) == 0.0


@pytest.mark.parametrize("variant", ["textured-70", "small-offcentre", "textured-70-degraded"])
def test_the_located_box_overlaps_the_true_box(variant):
    scores = [iou(locate(p.image)[0], p.boxes[0]) for p in photos(variant, 12)]
    assert np.mean(np.asarray(scores) >= 0.5) >= 0.9, scores


@pytest.mark.parametrize("variant,n", [("multi-2", 2), ("multi-3", 3)])
def test_several_items_give_several_boxes(variant, n):
    found = []
    for p in photos(variant, 8, seed=1):
        boxes = locate(p.image, max_items=3)
        assert 1 <= len(boxes) <= 3 and [b.score for b in boxes] == sorted((b.score for b in boxes), reverse=True)
        found += [max(iou(b, t) for b in boxes) >= 0.5 for t in p.boxes]
    assert np.mean(found) >= 0.85
    assert len(locate(next(photos(variant, 1, seed=2)).image, max_items=1)) == 1


def test_a_product_on_white_gives_its_tight_box_and_its_crop_is_the_shot():
    rgba = product_picture((60, 80), COLOURS[0], pattern_seed=4)
    shot = on_white(rgba)
    truth = mask_box(np.asarray(rgba.getchannel("A")) > 127)
    boxes = locate(shot)
    assert len(boxes) == 1 and boxes[0].score == 1.0 and iou(boxes[0], truth) >= 0.95
    out = crop(shot, boxes[0], pad=0.1)
    x, y, w, h = truth
    assert out.width >= w and out.height >= h


def test_crop_pads_inside_the_photo_and_whitens_outside_the_mask():
    img = Image.fromarray(np.full((100, 80, 3), 90, np.uint8))
    assert crop(img, (10, 20, 30, 40), pad=0.1).size == (38, 48)
    assert crop(img, (0, 0, 80, 100), pad=0.5).size == (80, 100)
    mask = np.zeros((100, 80), bool)
    mask[30:50, 20:30] = True
    arr = np.asarray(crop(img, (10, 20, 30, 40), pad=0.0, mask=mask))
    assert (arr[10:30, 10:20] == 90).all() and (arr[:10] == 255).all()


def test_bad_input_gives_typed_errors(tmp_path):
    with pytest.raises(ImageError):
        locate(b"this is not an image")
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(ImageError):
        locate(tmp_path / "x.jpg")
    with pytest.raises(InvalidArgumentError):
        locate(np.zeros((10, 10), np.uint8))
    img = Image.new("RGB", (50, 50), (10, 200, 10))
    with pytest.raises(InvalidArgumentError):
        locate(img, max_items=0)
    with pytest.raises(InvalidArgumentError):
        crop(img, (10, 10, 0, 5))
    with pytest.raises(InvalidArgumentError):
        crop(img, (80, 80, 10, 10), pad=0)


def test_a_plain_photo_still_gives_one_box():
    boxes = locate(Image.new("RGB", (120, 90), (40, 90, 160)))
    assert len(boxes) == 1 and boxes[0].w > 0 and boxes[0].h > 0


def test_grabcut_heat_map_finds_the_item():
    p = next(photos("textured-70", 1, seed=3))
    assert iou(locate(p.image, heatmap=grabcut_map)[0], p.boxes[0]) >= 0.5
    assert contrast_map(np.asarray(p.image)).max() <= 1.0


def colour_maps(rgb: np.ndarray) -> list[np.ndarray]:
    """A stand-in backbone (a plain callable): stride-16 and stride-32 grids of mean colour and its spread."""
    h, w = rgb.shape[:2]
    out = []
    for stride in (16, 32):
        gh, gw = max(1, h // stride), max(1, w // stride)
        cells = rgb[: gh * stride, : gw * stride].reshape(gh, stride, gw, stride, 3).astype(np.float32) / 255
        out.append(np.concatenate([cells.mean((1, 3)), cells.std((1, 3))], axis=-1).transpose(2, 0, 1))
    return out


def test_scda_on_a_plain_callable_thresholds_at_the_mean():
    def maps(rgb):
        a = np.zeros((4, 8, 6), np.float32)
        a[:, 2:5, 1:3] = 1.0
        return [a, a]

    heat = scda_map(maps)(np.zeros((256, 192, 3), np.uint8))
    assert heat.shape == (8, 6) and (heat[2:5, 1:3] == 1).all() and (heat[0] == 0).all()
    box = locate(np.zeros((256, 192, 3), np.uint8) + 100, heatmap=scda_map(maps))[0]
    assert iou(box, (32, 64, 64, 96)) >= 0.6


def test_heatmap_head_learns_from_composites_and_round_trips_through_npz(tmp_path):
    train = [(np.asarray(p.image), p.labels > 0) for v in ("textured-70", "small-offcentre") for p in photos(v, 10, seed=5)]
    head = HeatmapHead.train(colour_maps, train, hidden=8, epochs=10)
    head.save(tmp_path / "localiser.npz")
    again = HeatmapHead.load(tmp_path / "localiser.npz", colour_maps)
    test = list(photos("textured-70", 6, seed=9))
    rgb = np.asarray(test[0].image)
    assert np.allclose(head(rgb), again(rgb))
    scores = [iou(locate(p.image, heatmap=again)[0], p.boxes[0]) for p in test]
    assert np.mean(np.asarray(scores) >= 0.5) >= 0.8, scores
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(WeightsError):
        HeatmapHead.load(tmp_path / "bad.npz", colour_maps)


def test_backbone_maps_cut_the_letterbox_away(random_embedder):
    maps = BackboneMaps(random_embedder, runtime="torch")
    mid, last = maps(np.zeros((320, 240, 3), np.uint8))
    assert mid.shape[1:] == (14, 10) and last.shape[1:] == (7, 5)  # 224 x 168 of the 224 square: cells 2..12 / 1..6
    assert mid.shape[0] == 1024 and last.shape[0] == 2048


def test_item_crops_embeds_a_shot_on_white_as_it_is_and_crops_a_photo():
    from stylelens.item.localise import item_crops

    shot = on_white(product_picture((60, 80), COLOURS[1], pattern_seed=2))
    (box, query), = item_crops(shot)
    assert query.size == shot.size and np.array_equal(np.asarray(query), np.asarray(shot))
    p = next(photos("small-offcentre", 1, seed=4))
    found = item_crops(p.image, max_items=2)
    assert 1 <= len(found) <= 2 and iou(found[0][0], p.boxes[0]) >= 0.5
    assert found[0][1].width < p.image.width and found[0][1].height < p.image.height
