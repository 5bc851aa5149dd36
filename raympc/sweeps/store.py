"""A sweep's results: an append-only JSON-lines log (one row per finished point, fsynced) and the
tidy tables made from it (CSV and Parquet, one flat row per point).

A killed sweep loses nothing already appended; a line cut short by the kill is dropped when the
store is opened again, and rows are keyed by point id, so a resumed sweep never duplicates one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raympc.util.files import replace_atomically, write_text_atomically

RESULTS = "results.jsonl"


class ResultStore:
    """A sweep's results: `results.jsonl` (one fsynced line per finished point, so a killed sweep
    loses nothing it finished) and the flat tables written from it (`write_tables`).

    Args:
        out: the results directory.
    """

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.path = self.out / RESULTS

    def open(self) -> "ResultStore":
        self.out.mkdir(parents=True, exist_ok=True)
        self._drop_torn_tail()
        return self

    def _drop_torn_tail(self) -> None:
        """A kill during a write can leave a last line without its newline: cut it off."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with self.path.open("r+b") as f:
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())

    def rows(self) -> list[dict[str, Any]]:
        """Rows in the order they finished, the last one per point id."""
        if not self.path.exists():
            return []
        by_id: dict[str, dict[str, Any]] = {}
        for n, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{self.path}:{n} is not JSON ({exc}); fix or remove that line") from None
            by_id.pop(row["point_id"], None)
            by_id[row["point_id"]] = row
        return list(by_id.values())

    def statuses(self) -> dict[str, str]:
        return {r["point_id"]: r["status"] for r in self.rows()}

    def append(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, default=_plain) + "\n"
        with self.path.open("a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def drop(self, point_ids: set[str]) -> None:
        """Rewrite the log without these points (atomically), e.g. failed points to retry."""
        keep = [r for r in self.rows() if r["point_id"] not in point_ids]
        write_text_atomically(self.path, "".join(json.dumps(r, default=_plain) + "\n" for r in keep))

    def frame(self):
        """One flat row per point: nested fields become dotted columns (breakdown.activation.send_bytes)."""
        rows = self.rows()
        return pd.json_normalize(rows, sep=".") if rows else pd.DataFrame()

    def write_tables(self) -> list[Path]:
        df = self.frame()
        if df.empty:
            return []
        # lists (per-step figures, per-sample PSNR) do not fit a flat table: keep them as JSON text
        for col in df.columns:
            if df[col].map(lambda v: isinstance(v, (list, dict))).any():
                df[col] = df[col].map(lambda v: json.dumps(v, default=_plain) if isinstance(v, (list, dict)) else v)
        written = []
        for name, write in (("results.csv", lambda p: df.to_csv(p, index=False)),
                            ("results.parquet", lambda p: df.to_parquet(p, index=False))):
            written.append(replace_atomically(self.out / name, write))
        return written


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)
