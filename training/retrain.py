"""Retraining: the training data plus the outcomes recorded since, trained as the next challenger.

Outcomes (`claimtriage export-labels`: stored claims with the labels their recorded outcome implies)
are newer than the training file's labels: they are what adjusters and the claims system found
after the claim was decided, while the training file's labels are what was known when it was
written. So for a claim in both, the outcome's labels win (`is_fraud` always; `paid_as_filed`
where the outcome says, the training file's where it does not, as a "not fraud" outcome says
nothing of payment); the claim's fields stay the training file's. Claims only in the outcomes are
added; no claim of either file is dropped.

The new version becomes the `challenger` (scored in the champion's shadow), never the champion:
only `claimtriage promote` moves that, through the gate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.graph import OUTCOME_TIME_FIELD
from features.schema import GROUND_TRUTH_FIELDS
from models.config import Config
from training import registry
from training.data import DataError
from training.fit import Extras, Progress
from training.train import TrainingResult, run_training

LABELS = ("is_fraud", "paid_as_filed")


@dataclass(frozen=True)
class LabelMerge:
    """What the merge did, in counts: every claim of both files is in `total`."""

    training: int
    outcomes: int
    relabelled: int  # in both, and the outcome changed a label
    added: int  # only in the outcomes
    total: int
    dropped_columns: tuple[str, ...] = ()

    def summary(self) -> str:
        text = (f"{self.training:,} training claims + {self.outcomes:,} claims with outcomes: "
                f"{self.outcomes - self.added:,} in both ({self.relabelled:,} relabelled by their outcome), "
                f"{self.added:,} added; {self.total:,} claims to train on")
        if self.dropped_columns:
            text += (f"\nnote: {', '.join(self.dropped_columns)} left out: the added claims have no such values, "
                     "so the oracle figures would be computed on part of the test claims")
        return text


@dataclass(frozen=True)
class Retraining:
    merge: LabelMerge
    result: TrainingResult
    offline: tuple[registry.Promotion, list[str]] | None  # the gate's comparison with the champion

    def offline_summary(self, champion_alias: str) -> str:
        if self.offline is None:
            return f"offline: no {champion_alias} to compare with"
        gate, worse = self.offline
        rows = [f"  {k:20s} challenger {gate.candidate_metrics[k]:.4f} vs champion {gate.champion_metrics[k]:.4f}"
                for k in gate.candidate_metrics]
        verdict = (f"would be refused by the promotion gate: worse on {', '.join(worse)}" if worse
                   else f"passes the promotion gate: `claimtriage promote {gate.version}` would promote it")
        return (f"offline, on version {gate.version}'s test claims (the promotion gate's comparison with champion "
                f"version {gate.previous}):\n" + "\n".join(rows) + f"\n  {verdict}")


def merge_outcomes(training: pd.DataFrame, outcomes: pd.DataFrame) -> tuple[pd.DataFrame, LabelMerge]:
    """The training claims with the outcomes' newer labels, plus the claims only the outcomes have."""
    _check(training, "the training data", ("claim_id", "is_fraud"))
    _check(outcomes, "the outcomes", ("claim_id", "is_fraud"))
    training, outcomes = _aligned(training, outcomes[[c for c in outcomes.columns if c in training.columns]])
    newer = outcomes.set_index("claim_id")
    both = training["claim_id"].isin(newer.index).to_numpy()
    merged = training.copy()
    for label in LABELS:
        merged[label] = merged[label].astype("boolean") if label in merged.columns else pd.array(
            [pd.NA] * len(merged), dtype="boolean")
    before = merged.loc[both, list(LABELS)].copy()
    ids = merged.loc[both, "claim_id"]
    merged.loc[both, "is_fraud"] = newer.loc[ids, "is_fraud"].astype("boolean").to_numpy()
    if "paid_as_filed" in newer.columns:
        said = newer.loc[ids, "paid_as_filed"].astype("boolean")
        merged.loc[both, "paid_as_filed"] = said.fillna(before["paid_as_filed"].set_axis(said.index)).to_numpy()
    if OUTCOME_TIME_FIELD in newer.columns and OUTCOME_TIME_FIELD in merged.columns:
        # Fraud known from its first confirmation: the extract's, or the outcome's if earlier.
        said = newer.loc[ids, OUTCOME_TIME_FIELD].to_numpy(dtype="datetime64[s]")
        known = merged.loc[both, OUTCOME_TIME_FIELD].to_numpy(dtype="datetime64[s]")
        merged.loc[both, OUTCOME_TIME_FIELD] = np.where(np.isnat(known) | (said < known), said, known)
    after = merged.loc[both, list(LABELS)]
    changed = (after != before).fillna(False) | (after.isna() != before.isna())
    added = outcomes.loc[~outcomes["claim_id"].isin(training["claim_id"])]
    merged = pd.concat([merged, added], ignore_index=True)
    dropped = tuple(c for c in GROUND_TRUTH_FIELDS if c in merged.columns and len(added)
                    and merged[c].isna().any())
    merged = merged.drop(columns=list(dropped))
    return merged, LabelMerge(len(training), len(outcomes), int(changed.any(axis=1).sum()), len(added), len(merged),
                              dropped)


def _check(frame: pd.DataFrame, what: str, needed: tuple[str, ...]) -> None:
    """The columns the merge needs, and one row per claim: a claim twice would have two truths."""
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{what}: no {', '.join(missing)} column (columns: {', '.join(map(str, frame.columns))})")
    twice = frame["claim_id"][frame["claim_id"].duplicated()].unique()
    if len(twice):
        raise DataError(f"{what}: claim_id {', '.join(map(str, twice[:5]))} appears more than once")


def _aligned(training: pd.DataFrame, outcomes: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Columns typed differently in the two files (a CSV beside a Parquet file) as text in both, which
    validation parses as it parses any file; labels as nullable booleans."""
    training, outcomes = training.copy(), outcomes.copy()
    for column in outcomes.columns:
        if column in LABELS:
            outcomes[column] = outcomes[column].astype("boolean")
        elif training[column].dtype != outcomes[column].dtype:
            training[column] = _as_text(training[column])
            outcomes[column] = _as_text(outcomes[column])
    return training, outcomes


def _as_text(values: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.strftime("%Y-%m-%dT%H:%M:%S").astype("str")
    return values.astype("str")


def retrain(training: pd.DataFrame, outcomes: pd.DataFrame, config: Config, source: str,
            progress: Progress = lambda _: None, extras: Extras = Extras(), partial: bool = False,
            mapping: dict | None = None, source_notes: list[str] = ()) -> Retraining:
    """Merge, train and register a version, point the challenger alias at it, and compare it with the
    champion offline (the promotion gate's comparison, no alias moved)."""
    merged, merge = merge_outcomes(training, outcomes)
    result = run_training(merged, config, source, progress, promote=False, extras=extras, partial=partial,
                          mapping=mapping, source_notes=[*source_notes, merge.summary()])
    registry.point_challenger(result.version, config)
    return Retraining(merge, result, registry.challenge(result.version, config))
