"""Loading a claims extract, validating it for training, and the split by time."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.schema import CLAIM_FIELDS, LABEL_FIELDS, OUTCOME_TIME_FIELD, ClaimField
from features.validation import ValidationReport, validate_claims

SUFFIXES = (".parquet", ".csv")


class DataError(ValueError):
    """A claims file that cannot be used for training, with what to do about it."""


def read_claims(path: str | Path) -> pd.DataFrame:
    """Read a Parquet or CSV claims file as it is; typing and checks come from validation."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    raise DataError(f"{path}: unknown file type {path.suffix!r}; use one of {', '.join(SUFFIXES)}")


def validate_for_training(frame: pd.DataFrame, partial: bool = False,
                          extra_fields: tuple[ClaimField, ...] = ()) -> ValidationReport:
    """Claims plus outcome labels, checked; invalid rows are reported, never used.

    `partial`: the extract came through a mapping that declares which canonical fields it has,
    so absent fields are absent, not missing; `is_fraud` is always required, `paid_as_filed`
    only when present.
    """
    fields, labels = training_fields(frame.columns, partial, extra_fields)
    report = validate_claims(frame, fields=fields, labels=labels)
    if report.n_invalid == report.n_rows:
        raise DataError("no valid claims to train on:\n" + report.summary())
    return report


def training_fields(columns, partial: bool = False,
                    extra_fields: tuple[ClaimField, ...] = ()) -> tuple[tuple[ClaimField, ...], tuple[str, ...]]:
    """The fields and labels training holds an extract with these columns to (`validate_for_training`)."""
    fields = tuple(f for f in CLAIM_FIELDS if f.name in columns) if partial else CLAIM_FIELDS
    labels = tuple(name for name in LABEL_FIELDS if name == "is_fraud" or name in columns)
    outcome_times = (OUTCOME_TIME_FIELD,) if OUTCOME_TIME_FIELD.name in columns else ()
    return fields + tuple(extra_fields) + outcome_times, labels


@dataclass(frozen=True)
class Split:
    """Boolean masks over the claims: fit on train, tune on validation, judge on test."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    kind: str  # "time" or "stratified"
    detail: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {"split": self.kind, "n_train": int(self.train.sum()), "n_validation": int(self.validation.sum()),
                "n_test": int(self.test.sum()), **self.detail}


def claim_times(claims: pd.DataFrame) -> tuple[str, np.ndarray] | None:
    """The claim date a split by time should use: the report date, else the loss date, else none."""
    for name in ("report_date", "loss_date"):
        if name in claims.columns and claims[name].notna().all():
            return name, claims[name].to_numpy(dtype="datetime64[s]")
    return None


def split_claims(claims: pd.DataFrame, validation_share: float, test_share: float, seed: int) -> Split:
    """By time when the claims carry dates; stratified random (said in the split's kind) otherwise."""
    times = claim_times(claims)
    if times is None:
        return stratified_split(claims["is_fraud"].to_numpy(dtype=bool), validation_share, test_share, seed)
    return split_by_time(times[1], validation_share, test_share, times[0])


def split_by_time(times: np.ndarray, validation_share: float, test_share: float, on: str = "report_date") -> Split:
    """Train on older claims, validate and test on newer ones, cut at time quantiles.

    A random split would let the model learn from claims reported after the ones it is judged
    on, which flatters it; real use always scores claims newer than its training data.
    """
    ordered = np.sort(times)
    n = len(ordered)
    validation_start = ordered[int(n * (1 - validation_share - test_share))]
    test_start = ordered[int(n * (1 - test_share))]
    train = times < validation_start
    test = times >= test_start
    validation = ~train & ~test
    if min(train.sum(), validation.sum(), test.sum()) == 0:
        raise DataError("too few distinct claim dates to split by time into train, validation and test")
    return Split(train, validation, test, "time", {"split_on": on, "validation_start": str(validation_start),
                                                   "test_start": str(test_start)})


def stratified_split(is_fraud: np.ndarray, validation_share: float, test_share: float, seed: int) -> Split:
    """Random thirds that keep the fraud rate in each part: only for extracts without claim dates."""
    rng = np.random.default_rng(seed)
    part = np.empty(len(is_fraud), dtype=np.int8)
    for label in (False, True):
        idx = rng.permutation(np.flatnonzero(is_fraud == label))
        n_test, n_val = round(len(idx) * test_share), round(len(idx) * validation_share)
        part[idx[:n_test]], part[idx[n_test:n_test + n_val]], part[idx[n_test + n_val:]] = 2, 1, 0
    return Split(part == 0, part == 1, part == 2, "stratified", {"split_on": "none (no claim dates)"})


def cross_validation_splits(claims: pd.DataFrame, folds: int, repeats: int, validation_share: float,
                            seed: int) -> list[Split]:
    """Repeated stratified k-fold for small extracts; a stratified share of each training fold validates."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    is_fraud = claims["is_fraud"].to_numpy(dtype=bool)
    splits = []
    outer = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    for k, (fit_idx, test_idx) in enumerate(outer.split(np.zeros(len(claims)), is_fraud)):
        test = np.zeros(len(claims), bool)
        test[test_idx] = True
        # The outer folds already mix periods, so the inner validation share is drawn the same way.
        inner = stratified_split(is_fraud[fit_idx], validation_share, 0.0, seed + k)
        train, validation = np.zeros(len(claims), bool), np.zeros(len(claims), bool)
        train[fit_idx[inner.train]], validation[fit_idx[inner.validation]] = True, True
        splits.append(Split(train, validation, test, "stratified-cv", {"fold": k}))
    return splits
