"""Export the extracted features: vectors + ids + manifest, as .npy or Parquet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InvalidArgumentError
from .store import open_store

FORMATS = ("npy", "parquet")


def export_features(index_path, out, format: str = "npy") -> list[Path]:
    """Write the live vectors in id order. npy: OUT/vectors.npy + ids.txt + manifest.json; parquet: one file."""
    if format not in FORMATS:
        raise InvalidArgumentError(f"Unknown export format '{format}'. Choose npy or parquet.", code="bad_option")
    store = open_store(index_path)
    try:
        cols = store.columns
        rows = np.flatnonzero(cols.live)
        ids = [str(cols.ids[r]) for r in rows]
        order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
        rows, ids = rows[order], [ids[i] for i in order]
        vectors = store.vectors(rows) if len(rows) else np.zeros((0, store.dim), np.float32)
        out = Path(out)
        if format == "npy":
            out.mkdir(parents=True, exist_ok=True)
            np.save(out / "vectors.npy", vectors)
            (out / "ids.txt").write_text("".join(i + "\n" for i in ids))
            (out / "manifest.json").write_text(json.dumps(store.manifest, indent=2, sort_keys=True))
            return [out / "vectors.npy", out / "ids.txt", out / "manifest.json"]
        import pyarrow as pa
        import pyarrow.parquet as pq

        if out.suffix != ".parquet":
            out = out / "features.parquet" if out.is_dir() or not out.suffix else out.with_suffix(".parquet")
        out.parent.mkdir(parents=True, exist_ok=True)
        flat = pa.array(vectors.reshape(-1), type=pa.float32())
        table = pa.table({"id": pa.array(ids, pa.string()),
                          "vector": pa.FixedSizeListArray.from_arrays(flat, store.dim)})
        table = table.replace_schema_metadata({"stylelens_manifest": json.dumps(store.manifest, sort_keys=True)})
        pq.write_table(table, out)
        return [out]
    finally:
        store.close()

