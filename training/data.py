"""Loading a claims extract, validating it for training, and the split by time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

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


def validate_for_training(frame: pd.DataFrame) -> ValidationReport:
    """Claims plus outcome labels, checked; invalid rows are reported, never used."""
    report = validate_claims(frame, require_labels=True)
    if report.n_invalid == report.n_rows:
        raise DataError("no valid claims to train on:\n" + report.summary())
    return report


@dataclass(frozen=True)
class TimeSplit:
    """Boolean masks over the claims, oldest claims train, newest test."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    validation_start: pd.Timestamp
    test_start: pd.Timestamp

    def describe(self) -> dict:
        return {"split": "time", "n_train": int(self.train.sum()), "n_validation": int(self.validation.sum()),
                "n_test": int(self.test.sum()), "validation_start": str(self.validation_start),
                "test_start": str(self.test_start)}


def split_by_time(report_date: pd.Series, validation_share: float, test_share: float) -> TimeSplit:
    """Train on older claims, validate and test on newer ones, cut at report-time quantiles.

    A random split would let the model learn from claims reported after the ones it is judged
    on, which flatters it; real use always scores claims newer than its training data.
    """
    times = report_date.to_numpy(dtype="datetime64[s]")
    ordered = np.sort(times)
    n = len(ordered)
    validation_start = ordered[int(n * (1 - validation_share - test_share))]
    test_start = ordered[int(n * (1 - test_share))]
    train = times < validation_start
    test = times >= test_start
    validation = ~train & ~test
    if min(train.sum(), validation.sum(), test.sum()) == 0:
        raise DataError("too few distinct report dates to split by time into train, validation and test")
    return TimeSplit(train, validation, test, pd.Timestamp(validation_start), pd.Timestamp(test_start))
