"""The local engine: the whole input in one process with pandas.

History features are counted over the whole input at once (each claim against the claims reported
strictly before it, as in training), then claims are scored and written a chunk at a time, in claim id
order, so that memory for the model matrix, the scores and the explanations stays bounded and progress
can be told.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from bulk.io import REJECTED, SCORES, InputFiles, read_local, staged, write_summary
from bulk.scoring import POSITION, BatchPreparer, BulkScorer, duplicated_keys, rejected_frame
from features.graph import GraphReport
from models.bundle import TriageBundle

CHUNK = 20_000
REJECTED_ORDER = ["source", "row", "claim_id", "column", "reason"]
Progress = Callable[[str, int, int], None]  # (stage, done, total)


def score_local(inputs: InputFiles, out: str | Path, bundle: TriageBundle, about: dict, explain: bool,
                overwrite: bool = False, progress: Progress = lambda *_: None) -> dict:
    """Score every claim of `inputs` into the output folder `out`; returns the run's summary.
    `about` names the model (uri, version) for the summary and the rows."""
    with staged(out, overwrite) as folder:
        progress("read", 0, 0)
        raw = read_local(inputs)
        preparer = BatchPreparer(bundle)
        n_read, not_read = len(raw), preparer.columns_not_read(raw.columns)
        progress("validate", 0, n_read)
        prepared = preparer.prepare(raw)
        # The rows as read, every row's key and the typed claims before the duplicate check are each as
        # large as the book: let them go before history is counted (at 10M claims, gigabytes each).
        del raw
        duplicates = duplicated_keys(prepared.keys)
        unique = ~prepared.claims["claim_id"].isin(duplicates["claim_id"])
        canonical = prepared.claims.loc[unique].drop(columns=list(POSITION)).reset_index(drop=True)
        rejected = rejected_frame([prepared.rejected, preparer.duplicate_rejections(duplicates)])
        del prepared, unique, duplicates
        progress("history", 0, len(canonical))
        graph_report = GraphReport()
        history = bundle.builder.history_values(canonical, None, graph_report) if len(canonical) else {}
        scorer = BulkScorer(bundle, about["model_version"], explain)
        (folder / SCORES).mkdir()
        (folder / REJECTED).mkdir()
        # A chunk at a time in claim id order, each chunk its own part file: the output is by claim id
        # as Spark's is, and only one chunk's scores and reasons are ever held.
        order = np.argsort(canonical["claim_id"].to_numpy(dtype=object), kind="stable")
        decisions = Counter()
        for k, start in enumerate(range(0, max(len(canonical), 1), CHUNK)):
            rows = order[start:start + CHUNK]
            scores = scorer.score(canonical.iloc[rows].reset_index(drop=True), {n: v[rows] for n, v in history.items()})
            scores.to_parquet(folder / SCORES / f"part-{k:05d}.parquet", index=False)
            decisions.update(scores["decision"].tolist())
            progress("score", min(start + CHUNK, len(canonical)), len(canonical))
        rejected = sort_rejected(rejected)
        rejected.to_parquet(folder / REJECTED / "part-00000.parquet", index=False)
        summary = run_summary("local", str(inputs.root), about, explain, n_read,
                              decisions, rejected_counts(rejected), not_read, graph_report)
        write_summary(folder, summary)
    return summary


def sort_rejected(rejected: pd.DataFrame) -> pd.DataFrame:
    """Problems in input order (file, row), then by claim id, column and reason: the same order from either
    engine (Spark, not knowing a CSV row's number, orders a file's problems by claim id)."""
    return rejected.sort_values(REJECTED_ORDER, kind="stable", na_position="last", ignore_index=True)


def rejected_counts(rejected: pd.DataFrame) -> tuple[int, int]:
    """(rows rejected, problems): a row can have several problems."""
    return len(rejected[["source", "row", "claim_id"]].drop_duplicates()), len(rejected)


def run_summary(engine: str, where: str, about: dict, explain: bool, n_read: int, decisions: dict[str, int],
                rejected: tuple[int, int], not_read: list[str], graph_report: GraphReport) -> dict:
    """What a run did, the same from either engine for the same input (no clock, no paths of the machine)."""
    return {
        "engine": engine, "input": where,
        "model": about["model_uri"], "model_version": str(about["model_version"]),
        "explain": explain,
        "claims_read": int(n_read), "claims_scored": int(sum(decisions.values())),
        "rows_rejected": int(rejected[0]), "problems": int(rejected[1]),
        "decisions": {str(k): int(v) for k, v in sorted(decisions.items())},
        "columns_not_read": not_read,
        "identities_ignored": graph_report.as_dict(),
    }
