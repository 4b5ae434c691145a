"""A shopper's photo: the item(s) are found, each searched with its own crop; the shopper can pick a box."""

import io

import numpy as np
import pytest
from PIL import Image
from quality_catalog import build, outfit_catalog

from stylelens.item.composite import background
from stylelens.errors import InvalidArgumentError
from stylelens.item.localise import iou


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("items")
    rows = outfit_catalog(root / "catalog", n=48)
    return build(root / "catalog", root / "index"), rows, root / "catalog" / "images"


def two_item_photo(images, a: str, b: str, seed: int = 3):
    """Products a and b (their catalog pictures, scaled up) side by side on a plain coloured backdrop (a table)."""
    rng = np.random.default_rng(seed)
    canvas = Image.fromarray(background(rng, (900, 600), "solid"))
    boxes = []
    for pid, (x, y) in ((a, (80, 140)), (b, (560, 180))):
        item = Image.open(images / f"{pid}.jpg").convert("RGB").resize((240, 320))
        canvas.paste(item, (x, y))
        boxes.append((x, y, 240, 320))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=92)
    return out.getvalue(), boxes


def recognisable(index, rows) -> list[str]:
    """Products of different types that their catalog neighbours name rightly (what the crops are judged by)."""
    picked, kinds = [], set()
    for pid in sorted(rows):
        kind = rows[pid]["articleType"]
        if kind not in kinds and index.similar(pid, k=3, include_out_of_stock=True).identified.type == kind:
            picked.append(pid)
            kinds.add(kind)
    return picked


def test_two_items_get_their_own_box_and_results(shop):
    index, rows, images = shop
    a, b = recognisable(index, rows)[:2]
    photo, truth = two_item_photo(images, a, b)
    result = index.search(photo, k=3, include_out_of_stock=True)
    items = result.extra["items"]
    assert len(items) >= 2
    found = {pid: max(items, key=lambda item: iou(item["box"], box)) for pid, box in zip((a, b), truth)}
    for (pid, item), box in zip(found.items(), truth):
        assert iou(item["box"], box) >= 0.5, (pid, item["box"], box)
        kind = rows[pid]["articleType"]
        assert item["identified"]["type"] == kind and sum(p["type"] == kind for p in item["results"]) >= 2, (pid, item)
    assert result.ids == [p["id"] for p in items[0]["results"]]  # the top level is the main item's


def test_a_box_searches_that_region_and_whole_frame_search_is_a_setting(shop):
    index, rows, images = shop
    photo, truth = two_item_photo(images, "o001", "o010")
    picked = index.search(photo, k=3, box=",".join(map(str, truth[1])), include_out_of_stock=True)
    assert "o010" in picked.ids and picked.extra["items"][0]["box"] == list(truth[1])
    whole = type(index)(index.path, index.settings, embedder=index.embedder, localise=False)
    assert len(whole.search(photo, k=3).extra["items"]) == 1
    with pytest.raises(InvalidArgumentError, match="outside the 900x600 photo"):
        index.search(photo, box=(950, 10, 20, 20))
    with pytest.raises(InvalidArgumentError, match="box must be x,y,w,h"):
        index.search(photo, box="1,2,3")


def test_a_catalog_shot_on_white_is_searched_as_it_is(shop):
    index, rows, images = shop
    raw = (images / "o004.jpg").read_bytes()
    picture = Image.open(io.BytesIO(raw)).convert("RGB")
    resaved = io.BytesIO()
    picture.save(resaved, "PNG")  # not the same bytes: found by its vector, not its hash
    result = index.search(resaved.getvalue(), k=3, include_out_of_stock=True)
    assert len(result.extra["items"]) == 1 and result.products[0]["id"] == "o004" and result.products[0]["exact_match"]
    plain = index.store.vectors([index.row("o004")])[0]
    assert float(index.embedder.embed([picture])[0] @ plain) > 0.9999
