"""The page in a real headless Chromium over an index of a product feed: a product's several pictures on its card
(the matched one first, thumbnails to switch), a variant card's price range, colours and sizes.

Screenshots land in artifacts/screenshots/ (git-ignored) for people to look at.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from feedserver import FeedServer
from PIL import Image
from test_feeds import LOCAL, merchant_row, write_tsv
from test_fetch import jpeg

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("needs /usr/bin/chromium (apt-get install chromium)", allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

from test_browser import CHROMIUM_ARGS, TIMEOUT_MS, serve_in_thread, shot  # noqa: E402  (after the skips)

SIZE = (120, 160)


def picture(seed: int) -> bytes:
    return jpeg(seed, SIZE)


def png_file(data: bytes, path: Path) -> Path:
    Image.open(io.BytesIO(data)).convert("RGB").save(path, "PNG")
    return path


def test_a_card_shows_its_pictures_and_its_variants(tmp_path, random_embedder):
    from stylelens import build_index, open_index
    from stylelens.service.app import create_app

    with FeedServer() as server:
        rows = [merchant_row("P", server.route("/p-front.jpg", picture(1)), more=server.route("/p-back.jpg", picture(2)))]
        rows += [merchant_row(f"O{s}", server.route(f"/o{s}.jpg", picture(s))) for s in range(10, 16)]
        rows += [merchant_row("TEE-RED-M", server.route("/tee-red.jpg", picture(31)), group="TEE", colour="Red",
                              price="15.00 USD"),
                 merchant_row("TEE-BLUE-L", server.route("/tee-blue.jpg", picture(32)), group="TEE", colour="Blue",
                              price="19.00 USD")]
        rows[-1][12] = "L"
        feed = server.route("/feed.tsv", write_tsv(tmp_path / "feed.tsv", rows).read_bytes(), content_type="text/plain")
        build_index(feed, tmp_path / "index", embedder=random_embedder, **LOCAL)
    index = open_index(tmp_path / "index", embedder=random_embedder, localise=False)
    url, stop = serve_in_thread(create_app(index))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            page.wait_for_selector("body[data-ready='true']")

            def upload(path: Path):
                with page.expect_response(lambda r: r.url.endswith("/api/search")) as answer:
                    page.set_input_files("#file-input", str(path))
                assert answer.value.status == 200
                page.wait_for_function("() => document.querySelector('#results').getAttribute('aria-busy') === 'false'")
                page.wait_for_selector("#results .card:not(.skeleton)")
                return page.locator("#results .card:not(.skeleton)").first

            card = upload(png_file(picture(2), tmp_path / "back.png"))  # P's second picture
            assert card.get_attribute("data-id") == "P"
            assert card.locator(".card-img").get_attribute("src") == "/images/P%1Fview1"  # the picture that matched
            thumbs = card.locator(".card-view")
            assert thumbs.count() == 2 and thumbs.nth(1).get_attribute("aria-pressed") == "true"
            assert page.locator("#results .card[data-id='P']").count() == 1  # one card for its two pictures
            shot(page, "feed-views.png", full_page=False)
            thumbs.nth(0).click()
            assert card.locator(".card-img").get_attribute("src") == "/images/P"
            assert thumbs.nth(0).get_attribute("aria-pressed") == "true"

            card = upload(png_file(picture(32), tmp_path / "blue.png"))  # the blue variant's picture
            assert card.get_attribute("data-id") == "TEE"
            price = card.locator(".card-price").inner_text()
            assert "15" in price and "19" in price and "–" in price
            assert card.locator(".card-variants").inner_text() == "Red, Blue | M · L"
            assert card.locator(".card-view").count() == 2
            assert page.locator("#results .card[data-id^='TEE-']").count() == 0
            shot(page, "feed-variants.png", full_page=False)
            browser.close()
    finally:
        stop()
        index.close()
