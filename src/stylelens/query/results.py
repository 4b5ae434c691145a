"""What a query answers, as the library returns it and the shells render it."""

from __future__ import annotations

from dataclasses import dataclass, field

from .identify import Identification


@dataclass
class SearchResult:
    products: list[dict]
    identified: Identification | None = None
    took_ms: float = 0.0
    extra: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # one line each: a filter given that the catalog could not apply

    @property
    def ids(self) -> list[str]:
        return [p["id"] for p in self.products]

    def to_dict(self) -> dict:
        out = {"identified": self.identified.to_dict() if self.identified else None,
               "results": self.products, "took_ms": round(self.took_ms, 2), "notes": list(self.notes)}
        out.update(self.extra)
        return out
