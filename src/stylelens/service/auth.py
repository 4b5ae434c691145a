"""Whose data a request may touch. Every shopper is someone, with no set-up:

* **The page's shopper** (the default): the server issues an anonymous shopper id in a signed, HttpOnly,
  SameSite=Lax cookie (``GET /``, ``GET /api/shoppers/me``). The API acts only on that shopper: naming
  another id (``/api/users/alice``, ``user=`` on a search) is a 403. ``me`` names the cookie's shopper.
  A write made with the cookie must be JSON (a cross-site form cannot send it) or carry the cookie's
  CSRF token in ``X-CSRF-Token`` (``/api/shoppers/me`` gives it to the page; another site cannot read it).
* **Server-to-server** (setting auth_secret / ``serve --auth``): a shop's backend names its customer and sends
  ``X-Shopper-Token`` = ``shopper_token(secret, user)``; ``POST /api/shoppers`` issues an id and its token.

Cookies and tokens are HMACs keyed by one secret: the setting auth_secret, or else one generated per index and
kept with it (artifact ``shopper-secret``), so ids survive restarts and every replica accepts them; nothing
else needs storing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import Response

from ..errors import StylelensError
from ..query.personalize import check_user
from .http import bad, log

TOKEN_HEADER = "X-Shopper-Token"
CSRF_HEADER = "X-CSRF-Token"
COOKIE = "stylelens_shopper"
COOKIE_MAX_AGE = 365 * 24 * 3600
SECRET_ARTIFACT = "shopper-secret"
ME = "me"


def _mac(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()[:32]


def shopper_token(secret: str, user: str) -> str:
    return _mac(secret, str(user))


def csrf_token(secret: str, user: str) -> str:
    return _mac(secret, "csrf:" + str(user))


def shopper_cookie(secret: str, user: str) -> str:
    """The cookie's value for ``user``: the id and its signature (a shop's own site may set it for a customer)."""
    return f"{user}.{_mac(secret, 'cookie:' + user)}"


def shopper_secret(settings, database) -> str:
    """The key of cookies: auth_secret when set, else the index's own (made on first serve, kept with the
    index so restarts and replicas share it). An index that cannot be written gets one for this process,
    with a warning (shopper ids then end with it)."""
    if settings.auth_secret:
        return settings.auth_secret
    try:
        stored = database.read_artifact(SECRET_ARTIFACT)
        if not stored:
            database.write_artifact(SECRET_ARTIFACT, secrets.token_hex(32).encode())
            # Read back: of replicas starting at the same moment the last write wins (serve --workers makes it first).
            stored = database.read_artifact(SECRET_ARTIFACT)
        return stored.decode("ascii").strip()
    except (OSError, UnicodeDecodeError, AttributeError, StylelensError) as exc:
        log.warning("cannot keep a shopper secret with the index (%s): shopper cookies last as long as this server; "
                    "set STYLELENS_AUTH_SECRET to keep them", exc)
        return secrets.token_hex(32)


def cookie_shopper(request: Request) -> str | None:
    """The shopper of the request's cookie, when its signature holds."""
    value = request.cookies.get(COOKIE, "")
    user, _, _ = value.rpartition(".")
    if user and hmac.compare_digest(value, shopper_cookie(request.app.state.shopper_secret, user)):
        return user
    return None


def issue_cookie(request: Request, response: Response, user: str | None = None) -> str:
    """Set the shopper cookie on ``response`` (a new anonymous shopper unless ``user``); the shopper id."""
    user = user or uuid.uuid4().hex
    secure = request.url.scheme == "https"  # behind a TLS proxy, uvicorn's --proxy-headers make this https
    response.set_cookie(COOKIE, shopper_cookie(request.app.state.shopper_secret, user), max_age=COOKIE_MAX_AGE,
                        httponly=True, samesite="lax", secure=secure, path="/")
    return user


def new_shopper(secret: str) -> dict:
    user = uuid.uuid4().hex
    return {"user": user, "token": shopper_token(secret, user) if secret else None}


def shopper_of(request: Request, user: str | None, *, write: bool = False) -> str | None:
    """The shopper a request about ``user`` acts on, or 401/403 (None: no shopper named, nothing personal).

    A valid X-Shopper-Token (tokens on) speaks for the shopper it names; otherwise only the cookie's shopper
    may be named, as its id or ``me``, and a write with the cookie passes the CSRF check."""
    if user is None:
        return None
    if user != ME:
        check_user(user)  # a malformed id is a 422 whoever asks
    secret = request.app.state.settings.auth_secret
    given = request.headers.get(TOKEN_HEADER)
    if secret and given is not None:
        if user == ME or not hmac.compare_digest(given, shopper_token(secret, user)):
            raise _token_refused()
        return user
    mine = cookie_shopper(request)
    if mine is None or user not in (ME, mine):
        if secret:
            raise _token_refused()
        if mine is None:
            raise bad("This request has no shopper cookie: open the page first (it issues one), or call "
                      "GET /api/shoppers/me and send its cookie.", code="not_your_shopper", status=403)
        raise bad("A shopper can only read or change their own data: name yourself as 'me'.", code="not_your_shopper",
                  status=403)
    if write:
        _check_csrf(request, mine)
    return mine


def _token_refused():
    return bad(f"This shopper's data needs their token in the {TOKEN_HEADER} header (POST /api/shoppers issues an id "
               "and its token).", code="shopper_token", status=401)


def _check_csrf(request: Request, user: str) -> None:
    """A write carried by the cookie comes from this site: a foreign Origin is refused, and a body that a
    cross-site form could send (not JSON) needs the CSRF token only this site's page can read."""
    origin = request.headers.get("origin")
    # A proxy may rewrite Host and pass the shopper's in X-Forwarded-Host; a cross-site page cannot set that
    # header without a CORS preflight, so either names this site.
    here = {request.headers.get(h, "").lower() for h in ("host", "x-forwarded-host")} - {""}
    if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() not in here):
        raise _csrf_refused()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        return  # a cross-site page cannot send JSON without a CORS preflight, which this server never allows
    if not hmac.compare_digest(request.headers.get(CSRF_HEADER, ""), csrf_token(request.app.state.shopper_secret, user)):
        raise _csrf_refused()


def _csrf_refused():
    return bad(f"This change to a shopper's data needs the page's {CSRF_HEADER} header (GET /api/shoppers/me gives it); "
               "another site cannot make it.", code="csrf", status=403)
