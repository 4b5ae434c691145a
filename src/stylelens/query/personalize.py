"""Shoppers and their taste: their events (kept by the index, see ``index.events``) and Rocchio query blending.

A shopper is an opaque id chosen by the shop (no names, no e-mail). Events:

- ``like`` / ``dislike`` a product: the latest opinion on a product wins;
- ``view`` a product: counted, and used as a weak signal for a shopper with no likes yet;
- ``upload``: a search made for the shopper, remembered as its vector (never the picture).

Personalised search (Rocchio): ``q' = a*q + b*mean(liked) - c*mean(disliked)``, renormalised, with
a, b, c the settings ``rocchio_query`` (1.0), ``rocchio_like`` (1.0) and ``rocchio_dislike`` (0.5),
chosen with bench/quality/simulate.py (seed 1; the reported figures use seed 0).
Only history of the type the query was identified as takes part, so liking shirts does not pull a
shoe search towards shirts; disliked products are left out of the shopper's results.

"For you" (no query): one Rocchio profile per liked type (a = 0), their results interleaved, most
liked type first, leaving out products already liked or disliked. With no likes, recent uploads and
views seed it; with no history at all it is empty and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidArgumentError
from ..index.database import open_events
from ..index.events import USERS_DB  # noqa: F401  (where a folder index keeps them)
from .stages.personalise import rocchio  # noqa: F401  (the blend lives in the personalise stage)

EVENTS = ("like", "dislike", "view", "upload")
PRODUCT_EVENTS = ("like", "dislike", "view")
USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")


def check_user(user) -> str:
    user = "" if user is None else str(user)
    if not USER_ID.match(user):
        raise InvalidArgumentError(
            f"Shopper id {user[:40]!r} is not valid. Use 1 to 128 letters, digits or _ . : @ - (an opaque id, not personal data).",
            code="bad_user")
    return user


def check_event(kind) -> str:
    if kind not in EVENTS:
        raise InvalidArgumentError(f"Unknown event {kind!r}. Use one of: {', '.join(PRODUCT_EVENTS)}.", code="bad_event")
    return kind


@dataclass
class History:
    liked: list[str] = field(default_factory=list)  # product ids, oldest first
    disliked: list[str] = field(default_factory=list)
    viewed: list[str] = field(default_factory=list)  # most recent first, distinct
    uploads: list[np.ndarray] = field(default_factory=list)  # most recent first

    @property
    def empty(self) -> bool:
        return not (self.liked or self.disliked or self.viewed or self.uploads)


class Shoppers:
    """The events of every shopper of one index, kept where the index keeps its catalog (users.sqlite
    beside a folder index, the events table of a database index). Safe to share between threads."""

    def __init__(self, location):
        self.events = open_events(location)

    def close(self) -> None:
        self.events.close()

    def record(self, user: str, kind: str, product_id: str | None = None, vector: np.ndarray | None = None,
               sha256: str | None = None) -> dict:
        user, kind = check_user(user), check_event(kind)
        blob = None if vector is None else np.asarray(vector, np.float32).tobytes()
        self.events.append(user, kind, product_id, sha256, blob)
        return self.counts(user)

    def history(self, user: str) -> History:
        user = check_user(user)
        opinion: dict[str, str] = {}
        viewed: dict[str, None] = {}
        uploads = []
        for kind, pid, blob in self.events.rows(user):
            if kind in ("like", "dislike"):
                opinion.pop(pid, None)  # re-insert so the order is that of the latest opinion
                opinion[pid] = kind
            elif kind == "view":
                viewed.pop(pid, None)
                viewed[pid] = None
            elif kind == "upload" and blob:
                uploads.append(np.frombuffer(blob, np.float32))
        return History(liked=[p for p, k in opinion.items() if k == "like"],
                       disliked=[p for p, k in opinion.items() if k == "dislike"],
                       viewed=list(reversed(viewed)), uploads=uploads[::-1])

    def counts(self, user: str) -> dict:
        h = self.history(user)
        return {"like": len(h.liked), "dislike": len(h.disliked), "view": len(h.viewed), "upload": len(h.uploads)}

    def forget(self, user: str) -> int:
        """Delete everything stored about a shopper; returns how many events were deleted."""
        return self.events.forget(check_user(user))

    def users(self) -> list[str]:
        return self.events.users()


# ---- the library calls ---------------------------------------------------------------------

def feedback(index, user: str, product_id: str, event: str) -> dict:
    """Record that a shopper liked, disliked or viewed a catalog product. Returns their counts."""
    user = check_user(user)
    if event not in PRODUCT_EVENTS:
        raise InvalidArgumentError(f"Unknown event {event!r}. Use one of: {', '.join(PRODUCT_EVENTS)}.", code="bad_event")
    index.row(product_id)  # unknown product -> ProductNotFoundError
    return index.shoppers.record(user, event, product_id=str(product_id))


def forget(index, user: str) -> int:
    """Delete a shopper and all their events."""
    return index.shoppers.forget(user)


def recommend_for_user(index, user: str, k: int | None = None, *, collapse: bool | None = None, **filters):
    """The "For you" feed: products for a shopper from their history alone (see module doc and
    ``pipeline.recommend``). ``collapse`` shows near-identical products (cosine >= duplicate_cosine) once, as
    search does."""
    return index.recommend(user, k, collapse=collapse, **filters)
