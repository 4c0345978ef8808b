"""Inputs and outputs of bulk scoring.

Input: one Parquet or CSV file, or a directory of part files (as Spark and Hive write them; names
starting with "_" or "." are not data). CSV is read as text, every cell as written, so validation
types it exactly as it types a request (an id "007" stays "007"); only an empty cell is missing.

Output: a directory holding `scores/` (one row per valid claim, by claim id), `rejected/` (one row
per problem of each rejected input row) and `summary.json` (counts, model version, engine). It is
written under a temporary name beside its destination and renamed into place only when complete:
a failed run leaves no half-written output, and an existing output is replaced only when asked.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from bulk.scoring import ROW, SOURCE

KINDS = {".parquet": "parquet", ".csv": "csv"}
SCORES, REJECTED, SUMMARY = "scores", "rejected", "summary.json"
COMPARED_AT_ONCE = 1_000_000  # claims of one score column compared at a time by compare_outputs


class BulkInputError(ValueError):
    """An input that cannot be read: the message names the path and what to do."""


@dataclass(frozen=True)
class InputFiles:
    """The data files of an input, in name order, and their common kind (parquet or csv)."""

    root: Path
    files: tuple[Path, ...]
    kind: str


def input_files(path: str | Path) -> InputFiles:
    path = Path(path)
    if not path.exists():
        raise BulkInputError(f"--data {path}: no such file or directory")
    if path.is_file():
        kind = KINDS.get(path.suffix.lower())
        if kind is None:
            raise BulkInputError(f"--data {path}: unknown file type {path.suffix!r}; use .parquet or .csv "
                                 "(or a directory of them)")
        return InputFiles(path, (path,), kind)
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(("_", "."))
                   and p.suffix.lower() in KINDS)
    kinds = {KINDS[p.suffix.lower()] for p in files}
    if not files:
        raise BulkInputError(f"--data {path}: a directory without .parquet or .csv part files")
    if len(kinds) > 1:
        raise BulkInputError(f"--data {path}: mixes Parquet and CSV part files; one kind per input")
    return InputFiles(path, tuple(files), kinds.pop())


def read_csv_text(path: Path) -> pd.DataFrame:
    """A CSV file as text, each cell as written; an empty cell is missing (as Spark's CSV reader has it)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])


def read_local(inputs: InputFiles) -> pd.DataFrame:
    """Every row of every file, with its file name (SOURCE) and its 0-based row in that file (ROW)."""
    parts = []
    for path in inputs.files:
        frame = pd.read_parquet(path) if inputs.kind == "parquet" else read_csv_text(path)
        frame[SOURCE] = path.name
        frame[ROW] = range(len(frame))
        parts.append(frame)
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def check_destination(out: str | Path, overwrite: bool) -> Path:
    """Refuse, before any work, an output that exists (unless `overwrite`) or whose folder does not."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise BulkInputError(f"--out {out} exists; pass --overwrite to replace it")
    if out.exists() and not (out / SUMMARY).exists():
        raise BulkInputError(f"--out {out} exists and is not a score-bulk output (no {SUMMARY}); "
                             "refusing to replace it")
    if not out.parent.is_dir():
        raise BulkInputError(f"--out {out}: the folder {out.parent} does not exist")
    return out


@contextmanager
def staged(out: str | Path, overwrite: bool):
    """A temporary directory beside `out` to write into; moved to `out` when the block completes,
    removed when it fails. An existing `out` (allowed by `overwrite`) is replaced only then."""
    out = check_destination(out, overwrite)
    temporary = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:12]}")
    temporary.mkdir()
    try:
        yield temporary
        if out.exists():
            retired = out.with_name(f".{out.name}.replaced-{uuid.uuid4().hex[:12]}")
            os.replace(out, retired)
            os.replace(temporary, out)
            shutil.rmtree(retired)
        else:
            os.replace(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def write_summary(folder: Path, summary: dict) -> None:
    (folder / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def read_output(out: str | Path, scores: bool = True) -> tuple[pd.DataFrame | None, pd.DataFrame, dict]:
    """(scores, rejected, summary) of a score-bulk output, scores by claim id (None without `scores`):
    how tests and users compare two runs."""
    out = Path(out)
    if scores:
        scores = pd.read_parquet(out / SCORES).sort_values("claim_id", kind="stable").reset_index(drop=True)
    else:
        scores = None
    rejected = pd.read_parquet(out / REJECTED)
    # The same dtypes whoever wrote it (an empty problems file carries no text type of its own).
    rejected = rejected.astype({c: "Int64" if c == "row" else "str" for c in rejected.columns})
    return scores, rejected, json.loads((out / SUMMARY).read_text())


def _score_files(out: Path) -> list[Path]:
    """An output's score part files in name order (the order both engines write claim ids in)."""
    return sorted(f for f in (out / SCORES).iterdir() if f.is_file() and not f.name.startswith(("_", ".")))


def _read_column(out: Path, column: str) -> pd.Series:
    """One score column, its part files read in name order (the order `order` arrays refer to)."""
    return pd.concat([pd.read_parquet(f, columns=[column])[column] for f in _score_files(out)], ignore_index=True)


def _score_columns(out: Path) -> list[str]:
    return [c for c in pq.ParquetDataset(out / SCORES).schema.names if not c.startswith("__index_level_")]


def _claim_ids(out: Path) -> tuple[pd.Series, np.ndarray | None]:
    """An output's claim ids in claim id order, and the order that puts its rows so (None when its
    part files, read in name order, already are)."""
    ids = _read_column(out, "claim_id")
    if ids.is_monotonic_increasing:
        return ids, None
    ordered = ids.sort_values(kind="stable")
    return ordered.reset_index(drop=True), ordered.index.to_numpy()


def _column_slices(out: Path, column: str, order: np.ndarray | None) -> Iterator[pd.Series]:
    """One score column in claim id order, COMPARED_AT_ONCE rows at a time: streamed from the part files
    when they are in claim id order, else read whole and put in order."""
    if order is not None:
        values = _read_column(out, column)
        for start in range(0, len(order), COMPARED_AT_ONCE):
            yield values.iloc[order[start:start + COMPARED_AT_ONCE]].reset_index(drop=True)
        return
    held, count = [], 0
    for f in _score_files(out):
        for batch in pq.ParquetFile(f).iter_batches(batch_size=COMPARED_AT_ONCE, columns=[column]):
            held.append(batch.column(0).to_pandas())
            count += len(held[-1])
            while count >= COMPARED_AT_ONCE:
                joined = pd.concat(held, ignore_index=True)
                yield joined.iloc[:COMPARED_AT_ONCE]
                held, count = [joined.iloc[COMPARED_AT_ONCE:].reset_index(drop=True)], count - COMPARED_AT_ONCE
    if count:
        yield pd.concat(held, ignore_index=True)


def _column_difference(first: Path, second: Path, column: str, a_order: np.ndarray | None,
                       b_order: np.ndarray | None, ids: pd.Series) -> str | None:
    """How one score column differs between two outputs, claim by claim in claim id order (None if it
    does not), compared COMPARED_AT_ONCE claims at a time."""
    differing, first_at, shown, start = 0, None, None, 0
    for left, right in zip(_column_slices(first, column, a_order), _column_slices(second, column, b_order),
                           strict=True):
        same = ((left == right) | (left.isna() & right.isna())).to_numpy()
        if not same.all():
            differing += int((~same).sum())
            if first_at is None:
                i = int((~same).argmax())
                first_at, shown = start + i, tuple(_plain(v) for v in (left.iat[i], right.iat[i]))
        start += len(left)
    if not differing:
        return None
    return f"{column} differs on {differing:,} claims, first {ids.iat[first_at]}: {shown[0]!r} and {shown[1]!r}"


def _plain(value):
    """A cell as Python shows it (0.3, not np.float64(0.3))."""
    return value.item() if isinstance(value, np.generic) else value


def compare_outputs(first: str | Path, second: str | Path) -> list[str]:
    """How two score-bulk outputs differ (empty when they are the same): scores claim by claim and
    value by value, problems, and summaries (but for the engine that wrote them). Problems are matched
    without their row number when one output does not know it (Spark reading CSV).

    Scores are read a column at a time (claim ids first, to put both in claim id order) and compared a
    million claims at a time, streamed from part files already in claim id order (as both engines write
    them), so two outputs of ten million claims with reasons are never held whole."""
    first, second = Path(first), Path(second)
    found = []
    a_columns, b_columns = _score_columns(first), _score_columns(second)
    if a_columns != b_columns:
        found.append(f"score columns differ: {a_columns} and {b_columns}")
    else:
        (a_ids, a_order), (b_ids, b_order) = _claim_ids(first), _claim_ids(second)
        if len(a_ids) != len(b_ids) or not a_ids.equals(b_ids):
            only = set(a_ids) ^ set(b_ids)
            found.append(f"scored claims differ: {len(a_ids):,} and {len(b_ids):,}, {len(only):,} in only one "
                         f"(e.g. {sorted(only)[:3]})")
        else:
            for column in a_columns:
                difference = None if column == "claim_id" else _column_difference(first, second, column, a_order,
                                                                                  b_order, a_ids)
                if difference:
                    found.append(difference)
    _, a_rejected, a_summary = read_output(first, scores=False)
    _, b_rejected, b_summary = read_output(second, scores=False)
    if a_rejected["row"].isna().any() != b_rejected["row"].isna().any():
        a_rejected, b_rejected = (r.drop(columns="row").sort_values(["source", "claim_id", "column", "reason"],
                                                                    ignore_index=True) for r in (a_rejected, b_rejected))
    if not a_rejected.equals(b_rejected):
        found.append(f"problems differ: {len(a_rejected):,} and {len(b_rejected):,} rows")
    for key in sorted((set(a_summary) | set(b_summary)) - {"engine"}):
        if a_summary.get(key) != b_summary.get(key):
            found.append(f"summary {key} differs: {a_summary.get(key)!r} and {b_summary.get(key)!r}")
    return found
