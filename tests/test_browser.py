"""The web page in a real headless Chromium, against `stylelens serve` over real fashion-small products.

Screenshots land in artifacts/screenshots/ (git-ignored) for people to look at.
"""

from __future__ import annotations

import base64
import csv
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from service_fixtures import FASHION_SMALL, fashion_small_catalog, free_port

from stylelens import build_index

pytestmark = [pytest.mark.browser, pytest.mark.realdata, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
CATALOG_SIZE = 300
TIMEOUT_MS = 60_000

if not CHROMIUM.exists() or not (FASHION_SMALL / "styles.csv").exists():
    pytest.skip("needs /usr/bin/chromium (apt-get install chromium) and ../shared/data/fashion-small",
                allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright


@pytest.fixture(scope="session")
def fashion_index(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fashion")
    catalog = fashion_small_catalog(root / "catalog", CATALOG_SIZE)
    build_index(catalog, root / "index", backbone="efficientnet-lite0", weights="imagenet", workers=0, progress=False)
    return root / "index", catalog


@pytest.fixture(scope="session")
def server(fashion_index, tmp_path_factory):
    """`stylelens serve INDEX` as a subprocess on a free loopback port."""
    port = free_port()
    script = Path(sys.executable).with_name("stylelens")
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", "import sys; from stylelens.cli import main; sys.exit(main())"]
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd + ["serve", str(fashion_index[0]), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, f"stylelens serve exited: {log_path.read_text()}"
        try:
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"stylelens serve did not start: {log_path.read_text()}"
        time.sleep(0.3)
    yield url
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    # Module scope: Playwright's sync API holds the main thread's event loop while it runs, which
    # would break asyncio.run() in test modules that come after this one.
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def query_photo(fashion_index) -> tuple[Path, str]:
    """A fashion-small photo outside the indexed catalog, of the catalog's most common type."""
    catalog = fashion_index[1]
    with open(catalog / "products.csv", newline="") as fh:
        indexed = {r["id"]: r["articleType"] for r in csv.DictReader(fh)}
    common = Counter(indexed.values()).most_common(1)[0][0]
    with open(FASHION_SMALL / "styles.csv", newline="") as fh:
        for rec in csv.DictReader(fh):
            path = FASHION_SMALL / "images" / f"{rec['id']}.jpg"
            if rec["id"] not in indexed and rec["articleType"] == common and path.is_file():
                return path, common
    raise AssertionError("no query photo found")


def card_ids(page) -> list[str]:
    return page.eval_on_selector_all("#results .card:not(.skeleton)", "cards => cards.map(c => c.dataset.id)")


def shot(page, name: str) -> None:
    # Product pictures finish loading before the picture is taken.
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def test_upload_filter_more_like_this_and_errors(server, browser, fashion_index, tmp_path):
    photo, true_type = query_photo(fashion_index)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    problems = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    # A 4xx answer is logged as "Failed to load resource"; anything else (CSP, script errors) is a defect.
    page.on("console", lambda m: m.type == "error" and "Failed to load resource" not in m.text and problems.append(m.text))

    page.goto(server)
    page.wait_for_selector("body[data-ready='true']")
    assert page.locator("#f-type option").count() > 5  # facets filled the filter controls
    shot(page, "01-start.png")

    # Upload a photo: the item is identified and products are shown.
    with page.expect_response(lambda r: r.url.endswith("/api/search")) as answer:
        page.set_input_files("#file-input", str(photo))
    assert answer.value.status == 200
    # This server has the personalisation routes, so the search carried the shopper id and was remembered.
    shopper = page.evaluate("() => localStorage.getItem('stylelens.shopper')")
    assert httpx.get(f"{server}/api/users/{shopper}/recommendations", params={"k": 3}).json()["results"]
    page.wait_for_selector("#results .card:not(.skeleton)")
    ident = page.inner_text("#ident-text")
    assert re.fullmatch(rf"{re.escape(true_type)} — \d{{1,3}}%", ident), ident
    assert page.is_visible("#preview")
    first = card_ids(page)
    assert len(first) >= 5
    # Near-duplicates are hidden by default; a card that stands for others says how many.
    uploaded = answer.value.json()["results"]
    assert all("similar_count" in p for p in uploaded)
    for p in uploaded:
        badge = page.locator(f"#results .card[data-id='{p['id']}'] .card-similar")
        if p["similar_count"]:
            assert badge.inner_text() == f"+{p['similar_count']} similar"
        else:
            assert badge.is_hidden()
    card = page.locator("#results .card").first
    assert card.locator("img").get_attribute("alt")
    assert card.locator("a.buy").get_attribute("href").startswith("https://shop.example/p/")
    assert re.fullmatch(r"\d+% match", card.locator(".match-text").inner_text())
    shot(page, "02-results.png")

    # A filter re-runs the search without re-uploading: the grid changes and obeys it.
    other_type = next(t for t in page.eval_on_selector_all("#f-type option", "os => os.map(o => o.value)")
                      if t and t != true_type and t in {"Shirts", "Casual Shoes", "Watches", "Handbags", "Kurtas"})
    with page.expect_response(lambda r: r.url.endswith("/api/search")) as answer:
        page.select_option("#f-type", other_type)
    assert answer.value.status == 200
    page.wait_for_function("() => document.querySelector('#results').getAttribute('aria-busy') === 'false'")
    filtered = card_ids(page)
    assert filtered and filtered != first
    types = page.eval_on_selector_all("#results .card .card-type", "els => els.map(e => e.textContent)")
    assert all(t.startswith(other_type) for t in types), types
    shot(page, "03-filtered.png")
    page.select_option("#f-type", "")
    page.wait_for_function("() => document.querySelector('#results').getAttribute('aria-busy') === 'false'")

    # Showing near-duplicates, then asking for variety: each re-runs the search with that setting.
    # (Chromium does not expose multipart bodies with a file to Playwright, so the answers are checked.)
    with page.expect_response(lambda r: r.url.endswith("/api/search")) as answer:
        page.uncheck("#f-collapse")
    assert answer.value.status == 200
    assert all("similar_count" not in p for p in answer.value.json()["results"])  # nothing collapsed
    page.wait_for_function("() => document.querySelector('#results').getAttribute('aria-busy') === 'false'")
    plain = card_ids(page)
    with page.expect_response(lambda r: r.url.endswith("/api/search")) as answer:
        page.locator("#f-variety").fill("0.6")
    assert answer.value.status == 200
    assert page.inner_text("#f-variety-value") == "60 %"
    page.wait_for_function("() => document.querySelector('#results').getAttribute('aria-busy') === 'false'")
    varied = card_ids(page)
    assert len(varied) == len(plain) and varied != plain  # MMR re-ranked the same kind of list
    with page.expect_response(lambda r: r.url.endswith("/api/search")):
        page.click("#clear-filters")  # back to the defaults: collapse on, no variety
    page.wait_for_function("() => document.querySelector('#results').getAttribute('aria-busy') === 'false'")
    assert page.is_checked("#f-collapse") and page.inner_text("#f-variety-value") == "off"

    # "More like this" on a card: similar products without re-uploading, the product itself left out.
    target = card_ids(page)[0]
    with page.expect_response(lambda r: "/similar" in r.url) as answer:
        page.locator(f"#results .card[data-id='{target}'] button.more").click()
    assert answer.value.status == 200
    page.wait_for_function("() => document.querySelector('#results-title').textContent.startsWith('More like')")
    page.wait_for_function("() => document.querySelector('#results').getAttribute('aria-busy') === 'false'")
    similar = card_ids(page)
    assert len(similar) >= 5 and target not in similar
    assert page.is_visible("#back-to-photo")
    shot(page, "04-more-like-this.png")

    # Likes feed the "For you" section (issue-5 endpoints are served by this build).
    if page.locator("#results .card .feedback").first.is_visible():
        with page.expect_response(lambda r: "/recommendations" in r.url):
            page.locator("#results .card button.like").first.click()
        page.wait_for_selector("#for-you:not([hidden]) .card")
        assert page.locator("#results .card button.like").first.get_attribute("aria-pressed") == "true"
        shot(page, "05-for-you.png")
        page.click("#forget-me")
        page.wait_for_selector("#for-you", state="hidden")
        assert page.locator("#results .card button.like[aria-pressed='true']").count() == 0

    # A file that is not an image: a friendly message, no results from the old photo.
    bad = tmp_path / "notes.jpg"
    bad.write_text("Order 1234: two shirts, one pair of shoes.\n" * 20)
    with page.expect_response(lambda r: r.url.endswith("/api/search")) as answer:
        page.set_input_files("#file-input", str(bad))
    assert answer.value.status == 422
    page.wait_for_selector("#message:not([hidden])")
    assert page.inner_text("#message-title") == "That file isn't a photo"
    assert "not an image" in page.inner_text("#message-text")
    assert card_ids(page) == [] and not page.is_visible("#identified")
    shot(page, "06-not-an-image.png")

    # Over the upload limit: said at once, nothing sent.
    sent = []
    page.on("request", lambda r: "/api/search" in r.url and sent.append(r.url))
    page.set_input_files("#file-input", files=[{"name": "huge.jpg", "mimeType": "image/jpeg", "buffer": bytes(11 * 1024 * 1024)}])
    page.wait_for_function("() => document.querySelector('#message-title').textContent === 'That photo is too big'")
    assert "10 MB" in page.inner_text("#message-text") or "10.0 MB" in page.inner_text("#message-text")
    assert sent == []
    assert not problems, problems
    page.close()


def test_api_docs_render_without_the_internet(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    outside = []
    page.on("request", lambda r: not r.url.startswith(server) and outside.append(r.url))
    page.goto(server + "/docs")
    page.wait_for_selector(".opblock-summary-path[data-path='/api/search']")
    assert page.locator(".opblock").count() >= 8  # every endpoint is listed
    assert outside == []
    shot(page, "08-api-docs.png")
    page.close()


def test_drag_and_drop_a_photo(server, browser, fashion_index):
    photo, true_type = query_photo(fashion_index)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server)
    page.wait_for_selector("body[data-ready='true']")
    transfer = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "dropped.jpg", { type: "image/jpeg" }));
            return dt;
        }""", base64.b64encode(photo.read_bytes()).decode())
    page.dispatch_event("#dropzone", "dragenter", {"dataTransfer": transfer})
    assert "dragging" in page.get_attribute("#dropzone", "class")
    with page.expect_response(lambda r: r.url.endswith("/api/search")) as answer:
        page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
    assert answer.value.status == 200
    page.wait_for_selector("#results .card:not(.skeleton)")
    assert page.inner_text("#ident-text").startswith(true_type)
    assert "dragging" not in page.get_attribute("#dropzone", "class")
    page.close()


def test_personal_parts_stay_hidden_without_their_endpoints(browser, fashion_index, monkeypatch):
    """A server without the personalisation / complete-the-look routes: the page hides those parts quietly."""
    import threading

    import uvicorn

    from stylelens.service import app as app_module

    monkeypatch.setattr(app_module, "_quality_router", lambda: None)
    app = app_module.create_app(fashion_index[0])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "in-process server did not start"
            time.sleep(0.1)
        photo, _ = query_photo(fashion_index)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"http://127.0.0.1:{port}")
        page.wait_for_selector("body[data-ready='true']")
        with page.expect_response(lambda r: r.url.endswith("/api/search")) as answer:
            page.set_input_files("#file-input", str(photo))
        assert answer.value.status == 200
        page.wait_for_selector("#results .card:not(.skeleton)")
        assert not page.locator("#results .card .feedback").first.is_visible()
        with page.expect_response(lambda r: "/complete-the-look" in r.url) as look:
            page.locator("#results .card button.more").first.click()
        assert look.value.status == 404
        page.wait_for_function("() => document.querySelector('#results-title').textContent.startsWith('More like')")
        assert page.is_hidden("#complete-look") and page.is_hidden("#for-you") and page.is_hidden("#message")
        # No shopper id was sent where nothing could use it: nothing was remembered about this shopper.
        shopper = page.evaluate("() => localStorage.getItem('stylelens.shopper')")
        assert set(app.state.index.shoppers.counts(shopper).values()) == {0}
        page.close()
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_phone_layout_and_keyboard(server, browser, fashion_index):
    photo, _ = query_photo(fashion_index)
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server)
    page.wait_for_selector("body[data-ready='true']")
    assert page.is_visible("label[for='camera-input']")  # a phone gets the camera button
    assert page.get_attribute("#camera-input", "capture") == "environment"
    page.set_input_files("#file-input", str(photo))
    page.wait_for_selector("#results .card:not(.skeleton)")
    # Every card fits the narrow screen: nothing scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "07-phone.png")

    # The filters fold away on a phone; the keyboard opens them and Tab reaches every control.
    assert not page.is_visible("#f-gender")
    page.focus("#filters-toggle")
    page.keyboard.press("Enter")
    assert page.get_attribute("#filters-toggle", "aria-expanded") == "true" and page.is_visible("#f-gender")
    page.focus("#file-input")
    reached = []
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("() => document.activeElement.id"))
    assert reached[:8] == ["camera-input", "filters-toggle", "f-gender", "f-type", "f-colour", "f-min", "f-max", "f-stock"], reached
    page.locator("#results .card button.more").first.focus()
    with page.expect_response(lambda r: "/similar" in r.url):
        page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#results-title').textContent.startsWith('More like')")
    page.close()
