"""Image URLs fetched from a real HTTP server on 127.0.0.1: faults, caps, refused hosts and schemes, the cache."""

from __future__ import annotations

import io
import time

import pytest
from feedserver import FeedServer
from imagegen import on_white, product_picture

from stylelens.intake.fetch import Fetcher, FetchPolicy, refused_address

LOCAL = dict(allow_private_hosts=True, retries=2, backoff_s=0.05, timeout_s=2.0)


def jpeg(seed: int, size=(60, 80)) -> bytes:
    buf = io.BytesIO()
    on_white(product_picture(size=size, pattern_seed=seed)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def server():
    with FeedServer() as s:
        yield s


def fetcher(tmp_path, **policy) -> Fetcher:
    return Fetcher(tmp_path / "cache", FetchPolicy(**dict(LOCAL, **policy)))


def test_an_image_is_downloaded_and_a_second_fetch_sends_a_conditional_request_only(tmp_path, server):
    url = server.route("/a.jpg", jpeg(1))
    with fetcher(tmp_path) as f:
        first = f.fetch(url)
        assert first.status == "downloaded" and first.path.suffix == ".jpg" and first.path.read_bytes() == jpeg(1)
    with fetcher(tmp_path) as f:  # a new run: only the cache on disk is shared
        again = f.fetch(url)
    assert again.status == "not_modified" and again.path == first.path
    assert [entry[2] for entry in server.log] == [200, 304] and server.bodies_sent() == 1


def test_a_changed_image_is_downloaded_again(tmp_path, server):
    url = server.route("/a.jpg", jpeg(1))
    with fetcher(tmp_path) as f:
        f.fetch(url)
        server.route("/a.jpg", jpeg(2))
        changed = f.fetch(url)
    assert changed.status == "downloaded" and changed.path.read_bytes() == jpeg(2)


@pytest.mark.parametrize("route, code, words", [
    (dict(status=404, body=b"<html>gone</html>", content_type="text/html"), "http_status", "HTTP 404"),
    (dict(body=b"<!DOCTYPE html><html><body>Our shop</body></html>", content_type="text/html"), "not_an_image", "not an image"),
    (dict(body=b'{"error": "expired token"}', content_type="image/jpeg"), "not_an_image", "expired token"),
    (dict(fail_first=99), "http_status", "HTTP 500, after 3 tries"),
])
def test_what_is_not_an_image_is_reported_with_its_reason(tmp_path, server, route, code, words):
    url = server.route("/x.jpg", **route)
    with fetcher(tmp_path) as f:
        got = f.fetch(url)
    assert (got.status, got.code, got.path) == ("failed", code, None) and words in got.message


def test_a_500_then_success_is_retried_and_retry_after_is_honoured(tmp_path, server):
    flaky = server.route("/flaky.jpg", jpeg(3), fail_first=1)
    busy = server.route("/busy.jpg", jpeg(4), fail_first=1, fail_status=429, retry_after="1")
    with fetcher(tmp_path) as f:
        assert f.fetch(flaky).status == "downloaded"
        started = time.monotonic()
        assert f.fetch(busy).status == "downloaded"
        assert time.monotonic() - started >= 0.9  # waited as asked, not the 0.05 s backoff
    assert server.routes["/flaky.jpg"].served == 2 and server.routes["/busy.jpg"].served == 2


def test_redirects_are_followed_and_each_hop_is_checked(tmp_path, server):
    server.route("/real.jpg", jpeg(5))
    moved = server.route("/old.jpg", location="/real.jpg", status=301)
    to_file = server.route("/evil.jpg", location="file:///etc/passwd")
    server.route("/loop.jpg", location="/loop.jpg")
    with fetcher(tmp_path) as f:
        assert f.fetch(moved).path.read_bytes() == jpeg(5)
        evil, loop = f.fetch(to_file), f.fetch(server.url("/loop.jpg"))
    assert evil.code == "refused_url" and "file" in evil.message
    assert loop.code == "too_many_redirects"


def test_a_slow_server_times_out_and_a_huge_body_is_refused(tmp_path, server):
    slow = server.route("/slow.jpg", jpeg(6), delay_s=1.5)
    huge = server.route("/huge.jpg", b"\xff\xd8\xff" + bytes(300_000))
    with fetcher(tmp_path, timeout_s=0.3, retries=1, max_bytes=100_000) as f:
        started = time.monotonic()
        late = f.fetch(slow)
        assert time.monotonic() - started < 3.0
        big = f.fetch(huge)
    assert late.code == "timeout" and "2 tries" in late.message
    assert big.code == "too_large" and "fetch_max_image_bytes" in big.message


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.jpg", "gopher://example.com/", "data:image/png;base64,AAAA"])
def test_other_schemes_are_refused(tmp_path, url):
    with fetcher(tmp_path) as f:
        got = f.fetch(url)
    assert got.code == "refused_url" and got.path is None


def test_private_and_metadata_hosts_are_refused_without_the_switch(tmp_path, server):
    url = server.route("/a.jpg", jpeg(1))
    with fetcher(tmp_path, allow_private_hosts=False) as f:
        local, metadata = f.fetch(url), f.fetch("http://169.254.169.254/latest/meta-data/")
        named = f.fetch(url.replace("127.0.0.1", "localhost"))
    assert local.code == metadata.code == named.code == "refused_host"
    assert "allow_private_hosts" in local.message and "link-local" in metadata.message
    assert server.log == []  # refused before any connection
    for address in ("10.0.0.1", "192.168.1.2", "::1", "::ffff:127.0.0.1", "fd00:ec2::254", "0.0.0.0"):
        assert refused_address(address), address
    assert refused_address("93.184.216.34") is None


def test_caps_per_feed_on_count_and_bytes(tmp_path, server):
    urls = [server.route(f"/{i}.jpg", jpeg(i)) for i in range(4)]
    with fetcher(tmp_path, max_images=3) as f:
        results = f.fetch_all(urls)
    assert [results[u].code for u in urls] == [None, None, None, "feed_cap"]
    with Fetcher(tmp_path / "other", FetchPolicy(**dict(LOCAL, max_total_bytes=len(jpeg(0)) + 10, concurrency=1))) as f:
        results = f.fetch_all(urls)
    assert sum(results[u].code == "feed_cap" for u in urls) == 3


def test_a_failed_refresh_keeps_the_copy_downloaded_before_and_prune_drops_what_the_feed_left(tmp_path, server):
    url = server.route("/a.jpg", jpeg(1))
    other = server.route("/b.jpg", jpeg(2))
    with fetcher(tmp_path) as f:
        kept = f.fetch(url).path
        f.fetch(other)
        server.routes["/a.jpg"].status = 503
        again = f.fetch(url)
        assert again.code == "http_status" and again.path == kept and kept.is_file()
        assert f.prune([url]) == 1
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".jpg", ".json"]


def test_the_address_connected_to_is_checked_again(tmp_path, server):
    """A name that resolved to a public address for the check may connect elsewhere (DNS rebinding): the peer
    address of the open connection is checked before the body is read."""
    import httpx

    from stylelens.intake.fetch import _Failure

    url = server.route("/a.jpg", jpeg(1))
    with httpx.Client() as client, client.stream("GET", url) as response, fetcher(tmp_path, allow_private_hosts=False) as f:
        with pytest.raises(_Failure, match="connected to 127.0.0.1 is a loopback address"):
            f._check_peer(response)
