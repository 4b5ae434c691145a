"""Signed shopper tokens (optional, setting auth_secret / `serve --auth`): a shopper's likes, history and
"For you" can only be read or changed by whoever holds that shopper's token.

The server issues an id and its token (``POST /api/shoppers``); a shop's own backend may mint tokens for
its logged-in customers with ``shopper_token(secret, user)``. Tokens are an HMAC of the id, so any
replica that shares the secret accepts them and nothing needs storing.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

from fastapi import Request

from .http import bad

TOKEN_HEADER = "X-Shopper-Token"


def shopper_token(secret: str, user: str) -> str:
    return hmac.new(secret.encode(), str(user).encode(), hashlib.sha256).hexdigest()[:32]


def new_shopper(secret: str) -> dict:
    user = uuid.uuid4().hex
    return {"user": user, "token": shopper_token(secret, user) if secret else None}


def check_shopper(request: Request, user: str | None) -> None:
    """Refuse (401) a request about ``user`` without that shopper's token, when tokens are on."""
    secret = request.app.state.settings.auth_secret
    if not secret or user is None:
        return
    given = request.headers.get(TOKEN_HEADER, "")
    if not hmac.compare_digest(given, shopper_token(secret, user)):
        raise bad(f"This shopper's data needs their token in the {TOKEN_HEADER} header (POST /api/shoppers issues an id "
                  "and its token).", code="shopper_token", status=401)
