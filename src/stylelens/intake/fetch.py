"""Feed and image URLs -> local files in a cache, as a careful client fetches from servers it does not own.

A feed is untrusted input, and so is every URL in it:

- only ``http`` and ``https`` (other schemes are refused per URL); a host that resolves to a loopback, private,
  link-local (169.254.169.254, the cloud metadata service), multicast or reserved address is refused unless
  ``allow_private_hosts`` is on, and the address actually connected to is checked again before a byte of the
  body is read (a name that resolves differently the second time); redirects are followed by hand, at most
  :data:`MAX_REDIRECTS`, each hop checked the same way;
- a body over ``max_bytes`` is refused while it streams (never held whole), and an image must open as one of
  the formats the build decodes (Pillow reads its header): an HTML page or an error body served with 200 is
  ``not_an_image``;
- timeouts, 429 and 5xx answers are retried with exponential backoff, honouring ``Retry-After``;
- at most ``concurrency`` downloads at once, ``per_host`` to one host; per feed at most ``max_images`` URLs
  and ``max_total_bytes``.

The cache (a folder inside the index) is keyed by URL: the body (``<key>.<ext>``) and what the server said
about it (``<key>.json``: ETag, Last-Modified), each written atomically, body first. A re-run sends
conditional requests (``If-None-Match`` / ``If-Modified-Since``) and a 304 keeps the file as it is, so an
unchanged image is neither downloaded nor re-embedded; a run killed at any point loses only the downloads
in flight. When a URL fails and an earlier copy is cached, that copy is still used (and the failure reported).
"""

from __future__ import annotations

import email.utils
import hashlib
import io
import ipaddress
import itertools
import json
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import urljoin, urlsplit

from ..files import write_bytes_atomic, write_json_atomic
from ..settings import SETTINGS
from .images import SUPPORTED_FORMATS

MAX_REDIRECTS = 5
MAX_RETRY_AFTER_S = 60.0  # a server asking for a longer pause is not waited for: the URL is reported instead
SCHEMES = ("http", "https")
_EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}
_RETRY_STATUS = {429, 500, 502, 503, 504}
_REDIRECT_STATUS = {301, 302, 303, 307, 308}
# Not private by ipaddress's tables, yet inside a cloud: AWS's IPv6 metadata service.
_METADATA = {ipaddress.ip_address("fd00:ec2::254")}


@dataclass(frozen=True)
class FetchPolicy:
    """How URLs are fetched; defaults: the settings table (``allow_private_hosts``, ``fetch_*``)."""

    allow_private_hosts: bool = SETTINGS["allow_private_hosts"].default
    concurrency: int = SETTINGS["fetch_concurrency"].default
    per_host: int = SETTINGS["fetch_per_host"].default
    timeout_s: float = SETTINGS["fetch_timeout_s"].default
    retries: int = SETTINGS["fetch_retries"].default
    backoff_s: float = SETTINGS["fetch_backoff_s"].default
    max_bytes: int = SETTINGS["fetch_max_image_bytes"].default
    max_images: int = SETTINGS["fetch_max_images"].default
    max_total_bytes: int = SETTINGS["fetch_max_total_bytes"].default

    @classmethod
    def of(cls, settings) -> "FetchPolicy":
        return cls(settings.allow_private_hosts, settings.fetch_concurrency, settings.fetch_per_host,
                   settings.fetch_timeout_s, settings.fetch_retries, settings.fetch_backoff_s,
                   settings.fetch_max_image_bytes, settings.fetch_max_images, settings.fetch_max_total_bytes)


@dataclass(frozen=True)
class Fetched:
    """What became of one URL. ``path``: the cached file to use (None when there is none); ``status``:
    ``downloaded``, ``not_modified`` (a 304: the cached file stands) or ``failed`` (``code``, ``message``;
    ``path`` is then an earlier cached copy, if any)."""

    url: str
    path: Path | None
    status: str
    code: str | None = None
    message: str | None = None


class _Failure(Exception):
    def __init__(self, code: str, message: str, retry_after: float | None = None, retry: bool = False):
        super().__init__(message)
        self.code, self.message, self.retry_after, self.retry = code, message, retry_after, retry


def is_url(text) -> bool:
    """Whether ``text`` is an http(s) URL (a feed or image to download) rather than a path."""
    return isinstance(text, str) and urlsplit(text.strip()).scheme.lower() in SCHEMES


def url_scheme(text: str) -> str | None:
    """The scheme a feed value names ('ftp', 'file', 'https'), or None for a path (a Windows drive letter is a path)."""
    scheme = urlsplit(text.strip()).scheme.lower()
    return scheme if len(scheme) > 1 else None


def refused_address(address: str) -> str | None:
    """Why an IP address may not be fetched from without ``allow_private_hosts`` ("10.0.0.1 is a private
    address"), or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    for name, flag in (("a loopback", ip.is_loopback), ("a link-local (cloud metadata)", ip.is_link_local),
                       ("a private", ip.is_private or ip in _METADATA), ("a multicast", ip.is_multicast),
                       ("a reserved", ip.is_reserved or ip.is_unspecified)):
        if flag:
            return f"{address} is {name} address"
    return None


class Fetcher:
    """Downloads into ``cache`` (a folder) under a :class:`FetchPolicy`. Thread-safe; use as a context manager."""

    def __init__(self, cache: Path, policy: FetchPolicy | None = None, progress: bool = False):
        import httpx

        self.cache = Path(cache)
        self.cache.mkdir(parents=True, exist_ok=True)
        for leftover in self.cache.glob("*.tmp"):  # a write cut short by a kill: never renamed into place
            leftover.unlink(missing_ok=True)
        self.policy = policy or FetchPolicy()
        self.progress = progress
        # Proxies from the environment are not used: the address connected to is the one checked.
        self.client = httpx.Client(timeout=httpx.Timeout(self.policy.timeout_s), follow_redirects=False, trust_env=False,
                                   limits=httpx.Limits(max_connections=self.policy.concurrency,
                                                       max_keepalive_connections=self.policy.concurrency),
                                   headers={"User-Agent": "stylelens-feed/1 (+https://github.com/stylelens)"})
        self._hosts: dict[str, threading.Semaphore] = {}
        self._lock = threading.Lock()
        self.total_bytes = 0
        self.requests = 0

    def __enter__(self) -> "Fetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    # -- the cache -------------------------------------------------------------------------------------
    def key(self, url: str) -> str:
        return hashlib.sha256(url.encode()).hexdigest()[:32]

    def cached(self, url: str) -> tuple[dict | None, Path | None]:
        """(what the server said about ``url`` last time, its cached body) or (None, None)."""
        try:
            meta = json.loads((self.cache / (self.key(url) + ".json")).read_text())
        except (OSError, ValueError):
            return None, None
        path = self.cache / meta.get("file", "")
        return (meta, path) if meta.get("url") == url and path.is_file() else (None, None)

    def prune(self, keep: Iterable[str]) -> int:
        """Remove the cached copies of URLs not in ``keep`` (products gone from the feed); how many."""
        wanted = {self.key(url) for url in keep}
        removed = 0
        for path in self.cache.iterdir():
            if path.is_file() and path.name.split(".", 1)[0] not in wanted:
                path.unlink(missing_ok=True)
                removed += path.suffix == ".json"
        return removed

    # -- fetching --------------------------------------------------------------------------------------
    def fetch_all(self, urls: list[str]) -> dict[str, Fetched]:
        """Every URL fetched (see :meth:`stream`); URL -> :class:`Fetched`."""
        return {got.url: got for got in self.stream(urls)}

    def stream(self, urls: Iterable[str], desc: str = "downloading") -> Iterator[Fetched]:
        """Each URL's :class:`Fetched` as it completes (at most ``concurrency`` downloads at once, a bounded number
        of URLs taken ahead), with a progress bar showing the rate and what is left. URLs past ``max_images`` are
        not downloaded (``feed_cap``)."""
        from tqdm import tqdm

        urls = list(dict.fromkeys(urls))
        todo, over = urls[: self.policy.max_images], urls[self.policy.max_images:]
        workers = max(1, self.policy.concurrency)
        with tqdm(total=len(todo), unit="img", desc=desc, disable=not self.progress, smoothing=0.1, position=1,
                  leave=False, dynamic_ncols=True) as bar, \
                ThreadPoolExecutor(workers, thread_name_prefix="stylelens-fetch") as pool:
            ahead = iter(todo)
            pending: set = set()
            try:
                while True:
                    for url in itertools.islice(ahead, 4 * workers - len(pending)):
                        pending.add(pool.submit(self.fetch, url))
                    if not pending:
                        break
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        bar.update(1)
                        yield future.result()
            finally:  # the consumer stopped early: what is queued is not fetched
                for future in pending:
                    future.cancel()
        for url in over:
            yield self._failed(url, "feed_cap", f"more than {self.policy.max_images:,} image URLs in this feed "
                               "(setting fetch_max_images), not downloaded")

    def fetch(self, url: str, *, image: bool = True, max_bytes: int | None = None, name: str | None = None) -> Fetched:
        """One URL into the cache. ``image``: the body must be a picture the build decodes. ``name``: the cached
        file's name, starting with :meth:`key` (a feed keeps its extension: its format is read from it)."""
        meta, path = self.cached(url)
        try:
            return self._fetch(url, meta, path, image, max_bytes or self.policy.max_bytes, name)
        except _Failure as failure:
            return self._failed(url, failure.code, failure.message)

    def _failed(self, url: str, code: str, message: str) -> Fetched:
        return Fetched(url, self.cached(url)[1], "failed", code, message)

    def _fetch(self, url, meta, path, image, max_bytes, name) -> Fetched:
        import httpx

        headers = {}
        if meta is not None:  # a conditional request: a 304 sends no body
            if meta.get("etag"):
                headers["If-None-Match"] = meta["etag"]
            if meta.get("last_modified"):
                headers["If-Modified-Since"] = meta["last_modified"]
        current, hops, attempt = url, 0, 0
        while True:
            host = self._check(current)
            try:
                with self._host_slot(host):
                    outcome = self._get(current, headers, max_bytes)
            except httpx.TimeoutException:
                outcome = _Failure("timeout", f"timed out (no answer within {self.policy.timeout_s:g} s)", retry=True)
            except httpx.HTTPError as exc:  # refused connection, DNS failure, broken transfer
                outcome = _Failure("connection_error", f"could not connect or read ({type(exc).__name__}: {exc})"[:300],
                                   retry=True)
            if isinstance(outcome, _Failure):
                if not outcome.retry or attempt >= self.policy.retries:
                    if outcome.retry and attempt:
                        outcome.message += f", after {attempt + 1} tries"
                    raise outcome
                wait = outcome.retry_after if outcome.retry_after is not None else self.policy.backoff_s * 2 ** attempt
                if wait > MAX_RETRY_AFTER_S:
                    raise _Failure(outcome.code, outcome.message + f" (the server asks to wait {wait:.0f} s)")
                attempt += 1
                time.sleep(wait)
                continue
            status, response_headers, body = outcome
            if status in _REDIRECT_STATUS:
                hops += 1
                location = response_headers.get("location")
                if not location:
                    raise _Failure("http_status", f"HTTP {status} without a Location")
                if hops > MAX_REDIRECTS:
                    raise _Failure("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")
                current = urljoin(current, location)
                continue
            if status == 304 and path is not None:
                return Fetched(url, path, "not_modified")
            if status != 200:
                raise _Failure("http_status", f"HTTP {status}")
            fmt = _image_format(body, response_headers.get("content-type", "")) if image else None
            return Fetched(url, self._store(url, body, fmt, response_headers, name, path), "downloaded")

    def _get(self, url: str, headers: dict, max_bytes: int):
        """(status, headers, body) or a _Failure to retry; the body is read only for a 200."""
        with self.client.stream("GET", url, headers=headers) as response:
            with self._lock:
                self.requests += 1
            self._check_peer(response)
            status = response.status_code
            if status in _RETRY_STATUS:
                return _Failure("http_status", f"HTTP {status}", _retry_after(response.headers.get("retry-after")), retry=True)
            if status != 200:
                return status, response.headers, b""
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise _Failure("too_large", f"{int(length):,} bytes, more than the {max_bytes:,} allowed (setting "
                               "fetch_max_image_bytes)")
            chunks, size = [], 0
            deadline = time.monotonic() + 4 * self.policy.timeout_s  # a server that drips bytes forever
            for chunk in response.iter_bytes(1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    raise _Failure("too_large", f"more than the {max_bytes:,} bytes allowed (setting fetch_max_image_bytes)")
                if time.monotonic() > deadline:
                    return _Failure("timeout", f"the download took longer than {4 * self.policy.timeout_s:g} s", retry=True)
                chunks.append(chunk)
            with self._lock:
                self.total_bytes += size
                if self.total_bytes > self.policy.max_total_bytes:
                    raise _Failure("feed_cap", f"this feed's images passed {self.policy.max_total_bytes:,} bytes "
                                   "(setting fetch_max_total_bytes), not downloaded")
            return status, response.headers, b"".join(chunks)

    def _check(self, url: str) -> str:
        """The URL's host when it may be fetched; a _Failure saying why not otherwise."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise _Failure("refused_url", f"refused: the {scheme or 'missing'} scheme (only http and https URLs, or "
                           "local paths in a local feed)")
        try:
            host, port = parts.hostname, parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise _Failure("refused_url", "refused: not a valid URL") from None
        if not host:
            raise _Failure("refused_url", "refused: the URL names no host")
        if not self.policy.allow_private_hosts:
            try:
                addresses = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
            except (OSError, UnicodeError) as exc:
                raise _Failure("connection_error", f"could not resolve {host} ({exc})", retry=False) from None
            for address in sorted(addresses):
                why = refused_address(address)
                if why:
                    where = why if host == address else f"{host} resolves to {why}"
                    raise _Failure("refused_host", f"refused: {where} (set allow_private_hosts to fetch from your own network)")
        return host.lower()

    def _check_peer(self, response) -> None:
        """The address actually connected to, checked again: a name may resolve elsewhere the second time."""
        if self.policy.allow_private_hosts:
            return
        stream = response.extensions.get("network_stream")
        peer = stream.get_extra_info("server_addr") if stream is not None else None
        why = refused_address(peer[0]) if peer else None
        if why:
            raise _Failure("refused_host", f"refused: connected to {why} (set allow_private_hosts to fetch from your "
                           "own network)")

    def _host_slot(self, host: str) -> threading.Semaphore:
        with self._lock:
            slot = self._hosts.get(host)
            if slot is None:
                slot = self._hosts[host] = threading.Semaphore(max(1, self.policy.per_host))
            return slot

    def _store(self, url: str, body: bytes, fmt: str | None, headers, name: str | None, old: Path | None) -> Path:
        key = self.key(url)
        path = self.cache / (name or key + _EXTENSIONS.get(fmt or "", ".bin"))
        write_bytes_atomic(path, body)
        write_json_atomic(self.cache / (key + ".json"), {
            "url": url, "file": path.name, "bytes": len(body), "etag": headers.get("etag"),
            "last_modified": headers.get("last-modified")})
        if old is not None and old != path:  # the image changed format: its old file is nobody's now
            old.unlink(missing_ok=True)
        return path


def _image_format(body: bytes, content_type: str) -> str:
    """The picture format of a body (Pillow reads its header only), or a _Failure: not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(body)) as im:
            fmt = im.format
    except (UnidentifiedImageError, OSError, ValueError):
        fmt = None
    if fmt in SUPPORTED_FORMATS:
        return fmt
    start = body[:40].decode("utf-8", "replace").strip().replace("\n", " ")
    raise _Failure("not_an_image", f"not an image ({content_type or 'no content type'}"
                   + (f", a {fmt} picture" if fmt else f", starts with {start!r}") + ")")


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
