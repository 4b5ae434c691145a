"""What every indexing runner shares: the plan (what changed, by content hash), skips, unchanged
products, batch commits, the report and the progress bar.

A runner (``local.run_local``, ``ray.run_ray``) only decides where reading, decoding and embedding
happen; it feeds a ``Build`` with skips, unchanged ids and embedded batches, and every batch is
committed to the store before the next one is taken, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ImageError
from ..files import safe_cell
from ..intake.images import load_image
from ..models import Preprocess, prepare

ERRORS_CSV = "errors.csv"
WARNINGS_CSV = "warnings.csv"


@dataclass
class BuildReport:
    indexed: int = 0
    unchanged: int = 0
    skipped: int = 0
    removed: int = 0
    seconds: float = 0.0
    errors: list[tuple[str, str, str, str]] = field(default_factory=list)  # id, path, code, message
    without_image: list[str] = field(default_factory=list)
    without_product: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors_csv: Path | None = None
    warnings_csv: Path | None = None

    @property
    def images_per_s(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        text = (f"indexed {self.indexed:,}, unchanged {self.unchanged:,}, skipped {self.skipped:,}"
                + (f" (see {self.errors_csv})" if self.errors_csv and self.skipped else "")
                + f", removed {self.removed:,} in {self.seconds:.1f} s ({self.images_per_s:.1f} img/s)")
        if self.without_image:
            text += f"; {len(self.without_image):,} products have no image"
        if self.without_product:
            text += f"; {len(self.without_product):,} images have no product row"
        if self.warnings:
            text += f"; {len(self.warnings):,} feed warnings" + (f" (see {self.warnings_csv})" if self.warnings_csv else "")
        return text

    def to_dict(self) -> dict:
        return {"indexed": self.indexed, "unchanged": self.unchanged, "skipped": self.skipped, "removed": self.removed,
                "seconds": round(self.seconds, 3), "images_per_s": round(self.images_per_s, 2),
                "without_image": len(self.without_image), "without_product": len(self.without_product),
                "errors_csv": str(self.errors_csv) if self.errors_csv else None, "warnings": len(self.warnings),
                "warnings_csv": str(self.warnings_csv) if self.warnings_csv else None}


def prepare_bytes(data: bytes, pre: Preprocess, max_pixels: int) -> tuple[np.ndarray | None, tuple[str, str] | None]:
    """Image bytes -> (uint8 network input, None), or (None, (code, message)) saying why it cannot be."""
    try:
        return prepare(load_image(data, max_pixels=max_pixels), pre), None
    except ImageError as exc:
        return None, (exc.code, exc.message)
    except Exception as exc:  # a decoder bug must not stop the whole catalog
        return None, ("corrupt", f"{type(exc).__name__}: {exc}")


def progress_bar(total: int, enabled: bool, desc: str):
    """A tqdm bar over ``total`` images (a silent one when not ``enabled``)."""
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc=desc, disable=not enabled, smoothing=0.1, dynamic_ncols=True)


class Build:
    """One indexing run, whatever the runner: the catalog, the store it writes to, what it already
    holds (product id -> image hash) and the report."""

    def __init__(self, catalog, store, report: BuildReport, progress: bool, commit_every: int):
        self.catalog = catalog
        self.store = store
        self.report = report
        self.progress = progress
        self.commit_every = commit_every
        self.known = store.image_hashes()
        self.downloads = None  # a feed's images still to download (build.feed.FeedImages), or None

    @property
    def total(self) -> int:
        """Images this run goes through (the progress bar's length)."""
        return len(self.catalog.images) + (len(self.downloads.pids) if self.downloads else 0)

    def images(self):
        """(product id, image file) for every catalog image: the local ones, then each download as it arrives."""
        yield from self.catalog.images.items()  # lazily (the runner's window); downloads add to it only after this
        if self.downloads is not None:
            downloads, self.downloads = self.downloads, None
            yield from downloads.stream(self.skip)

    def settle_downloads(self) -> None:
        """Every download done, so ``catalog.images`` is complete (for a runner that needs all paths first)."""
        if self.downloads is not None:
            downloads, self.downloads = self.downloads, None
            for _ in downloads.stream(self.skip):
                pass

    def is_unchanged(self, pid: str, sha256: str) -> bool:
        return self.known.get(pid) == sha256

    def remove_gone(self) -> None:
        """Products the store holds that are no longer in the catalog."""
        waiting = self.downloads.pids if self.downloads is not None else ()
        self.report.removed = self.store.delete([pid for pid in self.known
                                                 if pid not in self.catalog.images and pid not in waiting])

    def skip(self, pid: str, path: str, code: str, message: str) -> None:
        self.report.errors.append((pid, path, code, message))

    def keep(self, pids: list[str]) -> None:
        """Products whose image is unchanged: feed fields (price, stock, names) may still have changed."""
        if pids:
            self.store.update_records([self.catalog.record(pid) for pid in pids])
            self.report.unchanged += len(pids)

    def commit(self, items: list[tuple[str, str, str]], vectors: np.ndarray) -> None:
        """(product id, image path, image sha256) per row of ``vectors``; durable when this returns."""
        records = [dict(self.catalog.record(pid), image_path=path, image_sha256=sha) for pid, path, sha in items]
        self.store.add(records, vectors)
        self.report.indexed += len(items)


def write_warnings(folder: Path, rows: list[dict], keys) -> Path | None:
    """warnings.csv beside the index (every feed warning, one per row); removed when a run had none."""
    path = Path(folder) / WARNINGS_CSV
    if not rows:
        path.unlink(missing_ok=True)
        return None
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, keys)
        writer.writeheader()
        writer.writerows({key: safe_cell(value) for key, value in row.items()} for row in rows)
    return path


def write_errors(folder: Path, errors) -> Path | None:
    """errors.csv (id, path, code, message) beside the index; removed when a run had none."""
    path = Path(folder) / ERRORS_CSV
    if not errors:
        path.unlink(missing_ok=True)
        return None
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "path", "code", "message"])
        writer.writerows([safe_cell(value) for value in row] for row in errors)
    return path
