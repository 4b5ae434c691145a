"""HTTP routes for shoppers (events, "For you", forget) and complete-the-look. Thin: parse -> library -> JSON."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from ..query import Index, personalize
from .auth import cookie_shopper, csrf_token, issue_cookie, new_shopper, shopper_of
from .http import bad, current_index, parse_options, public_product, public_result
from .uploads import body_chunks
from .schemas import EventResponse, ForgetResponse, LookResponse, SearchResponse, ShopperResponse

router = APIRouter(prefix="/api")
MAX_EVENT_BYTES = 4096  # {"product_id": ..., "event": ...} needs a few dozen


@router.post("/shoppers", response_model=ShopperResponse, summary="A new shopper id: its token (tokens on) or its cookie")
async def add_shopper(request: Request, response: Response):
    secret = request.app.state.settings.auth_secret
    if secret:  # server-to-server: the caller keeps the id and its token
        return new_shopper(secret)
    user = issue_cookie(request, response)
    return {"user": user, "token": None, "csrf": csrf_token(request.app.state.shopper_secret, user)}


@router.get("/shoppers/me", response_model=ShopperResponse, summary="This browser's shopper (issued on first call, as a cookie)")
async def me(request: Request, response: Response):
    """The page's shopper id and the CSRF token its writes carry; a new anonymous shopper cookie when the
    request has none."""
    user = cookie_shopper(request) or issue_cookie(request, response)
    return {"user": user, "token": None, "csrf": csrf_token(request.app.state.shopper_secret, user)}


@router.post("/users/{user}/events", response_model=EventResponse, summary="Record a shopper's like, dislike or view of a product")
async def add_event(user: str, request: Request, index: Index = Depends(current_index)):
    """JSON body ``{"product_id": "...", "event": "like" | "dislike" | "view"}``."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        # JSON only: a cross-site HTML form (text/plain, form-urlencoded) cannot post events for a shopper.
        raise bad("Send the event as JSON with the header Content-Type: application/json.", code="unsupported_media_type",
                  status=415)
    raw = b""
    async for chunk in body_chunks(request, request.app.state.settings.upload_stall_s):  # capped while reading
        raw += chunk
        if len(raw) > MAX_EVENT_BYTES:
            raise bad(f"An event body is at most {MAX_EVENT_BYTES:,} bytes of JSON.", code="too_large", status=413)
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: deeply nested JSON
        body = None
    if not isinstance(body, dict) or not body.get("product_id") or not body.get("event"):
        raise bad('Send a JSON body like {"product_id": "123", "event": "like"}; event is like, dislike or view.',
                  code="bad_request")
    user = shopper_of(request, user, write=True)
    counts = await run_in_threadpool(index.feedback, user, str(body["product_id"]), str(body["event"]))
    return {"ok": True, "user": user, "counts": counts}


@router.get("/users/{user}/recommendations", response_model=SearchResponse, summary='"For you": products for a shopper from their history')
async def recommendations(user: str, request: Request, index: Index = Depends(current_index)):
    """Query parameters: ``k``, ``collapse`` and the search filters (gender, type, colour, min_price, max_price,
    include_out_of_stock)."""
    user = shopper_of(request, user)
    k, filters, extras = parse_options(dict(request.query_params))
    unsupported = sorted(set(extras) - {"collapse"})  # no photo here: box, user, diversity do not apply
    if unsupported:
        raise bad(f"{', '.join(unsupported)} cannot be used with recommendations; leave it out.", code="unsupported_option")
    result = await run_in_threadpool(index.recommend, user, k, **filters, **extras)
    return public_result(result)


@router.delete("/users/{user}", response_model=ForgetResponse, summary="Forget a shopper: delete all their events")
async def forget_user(user: str, request: Request, index: Index = Depends(current_index)):
    user = shopper_of(request, user, write=True)
    deleted = await run_in_threadpool(personalize.forget, index, user)
    return {"ok": True, "user": user, "deleted": deleted}


@router.get("/products/{product_id}/complete-the-look", response_model=LookResponse, summary="Items from complementary categories that go with a product")
async def complete_the_look(product_id: str, request: Request, index: Index = Depends(current_index)):
    """``k`` (default 3) suggestions per complementary category (see stylelens.look for the rules)."""
    k, filters, extras = parse_options(dict(request.query_params))
    if filters or extras:
        raise bad(f"Only k can be given here, not {', '.join([*filters, *extras])}.", code="unsupported_option")
    result = await run_in_threadpool(index.look, product_id, None, k)
    return {"source": public_product(result.source),
            "groups": [{"category": g["category"], "products": [public_product(p) for p in g["products"]]}
                       for g in result.groups],
            "took_ms": round(result.took_ms, 2)}
