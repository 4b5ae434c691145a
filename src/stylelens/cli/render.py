"""Pictures of results: the query beside its recommendations, as one PNG."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from ..intake.images import load_image

TILE = 160
CAPTION = 34


def _tile(image: Image.Image, caption: str, border=(255, 255, 255)) -> Image.Image:
    tile = Image.new("RGB", (TILE, TILE + CAPTION), "white")
    thumb = ImageOps.contain(image, (TILE - 8, TILE - 8))
    tile.paste(thumb, ((TILE - thumb.width) // 2, (TILE - thumb.height) // 2))
    draw = ImageDraw.Draw(tile)
    for i, line in enumerate(caption.split("\n")[:2]):
        draw.text((4, TILE + 2 + 15 * i), _fit(draw, line, TILE - 8), fill=(30, 30, 30))
    ImageDraw.Draw(tile).rectangle([0, 0, TILE - 1, TILE + CAPTION - 1], outline=border, width=3)
    return tile


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int) -> str:
    """The text, cut with an ellipsis where it would run past ``width`` pixels."""
    if draw.textlength(text) <= width:
        return text
    while text and draw.textlength(text + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…"


ITEM_COLOURS = [(220, 60, 60), (240, 150, 20), (40, 130, 220)]


def results_grid(query, products: list[dict], out, title: str = "query", boxes=()) -> Path:
    """query (path/bytes/PIL) in the first tile, outlined, with the items' boxes (x, y, w, h in its pixels;
    the main item's in red), then one tile per product."""
    photo = load_image(query)
    if boxes:
        photo = photo.copy()
        draw = ImageDraw.Draw(photo)
        width = max(2, round(max(photo.size) / 120))
        for n, (x, y, w, h) in enumerate(boxes):
            draw.rectangle([x, y, x + w - 1, y + h - 1], outline=ITEM_COLOURS[n % len(ITEM_COLOURS)], width=width)
    tiles = [_tile(photo, title, border=(220, 60, 60))]
    for p in products:
        try:
            picture = load_image(p["image_path"])
        except Exception:  # a product picture that moved since indexing still gets its tile
            picture = Image.new("RGB", (TILE, TILE), (230, 230, 230))
        # The score first: it must stay readable when a long type name is cut.
        score = f"{p['score']:.2f}  " if p.get("score") is not None else ""
        tiles.append(_tile(picture, f"{score}{p.get('type') or p['id']}\n{p.get('name') or p['id']}"))
    cols = min(len(tiles), 6)
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * TILE, rows * (TILE + CAPTION)), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % cols) * TILE, (i // cols) * (TILE + CAPTION)))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, "PNG")
    return out
