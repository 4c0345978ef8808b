"""Validation of claims against the canonical schema, a whole frame at a time.

Every bad cell is reported (row, claim_id, column, value, reason); rows with no error come back
typed and otherwise untouched. Nothing is dropped, coerced or imputed silently: a row is either
valid as sent or listed in the report with the reason. The rules and their reasons come from
`features.record_spec`, which the one-claim validator derives its checks from as well.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd

# Rules and reasons are read as rules.NAME where they are used: stated in one place, changed in one.
from features import record_spec as rules
from features.record_spec import FALSE_TEXT, LARGEST_EXACT_INTEGER, LARGEST_FLOAT, TRUE_TEXT
from features.schema import CLAIM_FIELDS, LABEL_FIELDS, ClaimField

ERROR_COLUMNS = ("row", "claim_id", "column", "value", "reason")

LABEL_SCHEMA: dict[str, ClaimField] = {
    name: ClaimField(name, "boolean", True, f"Outcome label {name}.") for name in LABEL_FIELDS
}


class ClaimValidationError(ValueError):
    """Raised when claims fail validation; carries the full report."""

    def __init__(self, report: "ValidationReport"):
        self.report = report
        super().__init__(report.summary())


@dataclass
class ValidationReport:
    """What validation found: the typed valid rows and one entry per bad cell."""

    n_rows: int
    valid_mask: np.ndarray
    claims: pd.DataFrame
    errors: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(ERROR_COLUMNS)))
    # Every row's claim id as validation typed it (invalid rows too; None where it could not be read),
    # for a caller that checks uniqueness across frames (`validate_claims(unique=False)`).
    typed_claim_ids: pd.Series | None = None

    @property
    def ok(self) -> bool:
        """True when every row is valid."""
        return bool(self.valid_mask.all())

    @property
    def n_invalid(self) -> int:
        return int((~self.valid_mask).sum())

    def summary(self, max_lines: int = 20) -> str:
        """A readable report: counts, the commonest problems, then the first bad cells."""
        if self.ok:
            return f"{self.n_rows} claims, all valid."
        lines = [f"{self.n_rows} claims: {self.n_invalid} invalid, {self.n_rows - self.n_invalid} valid."]
        counts = self.errors.groupby(["column", "reason"], sort=False).size().sort_values(ascending=False)
        lines.append("Problems by field:")
        lines += [f"  {col}: {reason} ({n} rows)" for (col, reason), n in counts.head(max_lines).items()]
        lines.append("First bad cells:")
        for rec in self.errors.head(max_lines).itertuples(index=False):
            lines.append(f"  row {rec.row} claim_id={rec.claim_id!s}: {rec.column}={rec.value} {rec.reason}")
        if len(self.errors) > max_lines:
            lines.append(f"  ... and {len(self.errors) - max_lines} more")
        return "\n".join(lines)

    def to_records(self) -> list[dict]:
        """Machine-readable errors, one dict per bad cell."""
        return [
            {k: (None if pd.isna(v) else (int(v) if k == "row" else str(v))) for k, v in rec.items()}
            for rec in self.errors.to_dict(orient="records")
        ]

    def to_json(self) -> str:
        return json.dumps({"n_rows": self.n_rows, "n_invalid": self.n_invalid, "errors": self.to_records()})

    def raise_if_invalid(self) -> None:
        if not self.ok:
            raise ClaimValidationError(self)


def validate_claims(
    frame: pd.DataFrame,
    *,
    fields: Iterable[ClaimField] = CLAIM_FIELDS,
    require_labels: bool = False,
    labels: Iterable[str] = (),
    as_of: pd.Timestamp | None = None,
    unique: bool = True,
) -> ValidationReport:
    """Check every claim of `frame`; return typed valid rows plus a report of every bad cell.

    `fields` is the schema to hold the frame to (a model trained on a partial extract passes its
    own subset). `require_labels` demands both outcome labels; `labels` names the ones required
    when an extract has only some. `as_of` rejects loss and report dates later than that moment.
    `unique=False` leaves out the check that claim ids are unique within the frame, for a caller that
    checks it over more claims than one frame holds (bulk scoring on Spark, partition by partition).
    """
    wanted_labels = LABEL_FIELDS if require_labels else tuple(labels)
    fields = tuple(fields) + tuple(LABEL_SCHEMA[name] for name in wanted_labels)
    n = len(frame)
    claim_ids = _claim_id_text(frame)
    problems: list[pd.DataFrame] = []
    typed: dict[str, pd.Series] = {}
    for spec in fields:
        if spec.name not in frame.columns:
            if spec.required:
                problems.append(_issues(np.ones(n, bool), claim_ids, spec.name, None, rules.MISSING))
            continue
        values, checks = _parse_field(spec, frame[spec.name])
        typed[spec.name] = values
        problems += [_issues(mask, claim_ids, spec.name, frame[spec.name], reason)
                     for mask, reason in checks if mask.any()]
    problems += _cross_field_checks(typed, frame, claim_ids, as_of, unique)
    errors = _combine(problems)
    valid = np.ones(n, bool)
    valid[errors["row"].to_numpy(dtype=np.int64)] = False
    claims = frame.copy()
    for name, values in typed.items():
        claims[name] = values.set_axis(frame.index)
    ids = typed.get(rules.UNIQUE_IN_BATCH)
    return ValidationReport(n_rows=n, valid_mask=valid, claims=claims.loc[valid], errors=errors,
                            typed_claim_ids=None if ids is None else ids.reset_index(drop=True))


def _claim_id_text(frame: pd.DataFrame) -> pd.Series:
    if "claim_id" in frame.columns:
        return frame["claim_id"].astype("str", copy=False).reset_index(drop=True)
    return pd.Series([None] * len(frame), dtype="object")


def _issues(mask, claim_ids: pd.Series, column: str, values, reason) -> pd.DataFrame | None:
    rows = np.flatnonzero(np.asarray(mask))
    if len(rows) == 0:
        return None
    if values is None:
        shown = pd.Series([None] * len(rows), dtype="object")
    else:
        shown = pd.Series(values.iloc[rows].to_numpy(dtype=object)).map(show_value)
    reasons = reason if isinstance(reason, str) else pd.Series(np.asarray(reason, dtype=object)[rows])
    return pd.DataFrame({
        "row": rows,
        "claim_id": claim_ids.iloc[rows].to_numpy(dtype=object),
        "column": column,
        "value": shown.to_numpy(dtype=object),
        "reason": reasons if isinstance(reasons, str) else reasons.to_numpy(dtype=object),
    })


def show_value(value) -> str | None:
    """A cell as an error report quotes it; None when empty."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return rules.quote(value)


def _combine(problems: list[pd.DataFrame]) -> pd.DataFrame:
    problems = [p for p in problems if p is not None and len(p)]
    if not problems:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "row" else "object") for c in ERROR_COLUMNS})
    errors = pd.concat(problems, ignore_index=True)
    return errors.sort_values(["row"], kind="stable").reset_index(drop=True)


def _parse_field(spec: ClaimField, raw: pd.Series) -> tuple[pd.Series, list[tuple[np.ndarray, str]]]:
    """Parse one column to its canonical type; return it and (bad-mask, reason) pairs."""
    raw = raw.reset_index(drop=True)
    missing = raw.isna().to_numpy()
    parser = _PARSERS[spec.kind]
    values, bad_type, type_reason = parser(raw, missing)
    checks: list[tuple[np.ndarray, str]] = []
    if spec.required:
        checks.append((missing, rules.MISSING))
    checks.append((bad_type & ~missing, type_reason))  # one reason, or one per row
    ok = ~missing & ~bad_type
    checks += _range_checks(spec, values, ok)
    # A bad cell keeps no typed value, so no cross-field rule reasons from it a second time.
    bad = np.logical_or.reduce([mask for mask, _ in checks]) & ~missing
    return values.mask(bad), checks


def _range_checks(spec: ClaimField, values: pd.Series, ok: np.ndarray) -> list[tuple[np.ndarray, str]]:
    """The field's bounds on each readable value (a text's length, a number, a date), then its choices."""
    bounds = rules.bounds(spec)
    if bounds is None:
        return []
    if spec.kind == "string":
        measures = values.str.len().to_numpy(dtype=float, na_value=0)
    elif spec.kind in ("number", "integer"):
        measures = values.to_numpy(dtype=float, na_value=np.nan)
    else:
        measures = values  # date-times compare as they are, a missing one never out of bounds
    checks = [(ok & _as_mask(outside), reason)
              for outside, reason in ((measures < bounds.low, bounds.below), (measures > bounds.high, bounds.above))
              if reason is not None]
    if spec.kind == "string" and spec.choices:
        unlisted = ~values.isin(spec.choices).to_numpy()
        checks.append((ok & unlisted & (measures > 0), rules.not_one_of(spec.choices)))
    text_rule = rules.TEXT_RULES.get(spec.name) if spec.kind == "string" else None
    if text_rule is not None:  # on the texts that passed every check above, one reason per text
        passed = ok & ~np.logical_or.reduce([mask for mask, _ in checks]) if checks else ok
        # The rule is called only on texts it may refuse (so no Python call per ordinary id: the
        # column's regular expression runs in Arrow).
        suspect = passed.copy()
        if text_rule.passes is not None:
            suspect &= ~values.str.fullmatch(text_rule.passes).to_numpy(dtype=bool, na_value=False)
        reasons = np.full(len(values), None, dtype=object)
        reasons[suspect] = values[suspect].map(text_rule.problem).to_numpy(dtype=object)
        checks.append((passed & pd.notna(reasons), reasons))
    return checks


def _as_mask(found) -> np.ndarray:
    """A comparison's result, array or Series, as a boolean array in which a missing value is False."""
    return found.to_numpy(dtype=bool, na_value=False) if isinstance(found, pd.Series) else np.asarray(found, bool)


def _parse_string(raw: pd.Series, missing: np.ndarray):
    if pd.api.types.is_string_dtype(raw.dtype) and not pd.api.types.is_object_dtype(raw.dtype):
        return raw.astype("str"), np.zeros(len(raw), bool), ""
    if pd.api.types.is_integer_dtype(raw.dtype):
        # An all-digit identifier column read from CSV arrives as integers: its text is exact.
        return raw.astype("str").where(~pd.Series(missing), None).astype("str"), np.zeros(len(raw), bool), ""
    is_text = raw.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    values = raw.where(pd.Series(is_text), None).astype("str")
    return values, ~is_text, rules.NOT_TEXT


def parse_number(raw: pd.Series, missing: np.ndarray):
    """A column read as float64: (values, which could not be read, the reason). The record
    validator falls back on it for text only pandas reads, so both read numbers alike."""
    if pd.api.types.is_bool_dtype(raw.dtype):
        return pd.Series(np.full(len(raw), np.nan)), np.ones(len(raw), bool), rules.NOT_NUMBER_BOOL
    if pd.api.types.is_numeric_dtype(raw.dtype):
        numbers = raw.astype("float64")
        bad = ~np.isfinite(numbers.to_numpy(na_value=0.0))
        return numbers.where(~pd.Series(bad), np.nan), bad, rules.NOT_FINITE
    is_bool = raw.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool)
    # A whole number beyond any float (JSON allows 1 followed by 400 zeros) is reported, not raised.
    huge = raw.map(lambda v: isinstance(v, int) and not isinstance(v, bool) and abs(v) > LARGEST_FLOAT) \
        .to_numpy(dtype=bool)
    numbers = pd.to_numeric(raw.where(~pd.Series(is_bool | huge), None), errors="coerce").astype("float64")
    arr = numbers.to_numpy(na_value=np.nan)
    bad = is_bool | huge | ~np.isfinite(arr)  # text such as "inf" or "1e400" is no amount either
    reasons = np.where(huge, rules.TOO_LARGE, rules.NOT_NUMBER).astype(object)
    return numbers.where(~pd.Series(bad), np.nan), bad & ~missing, reasons


def _parse_integer(raw: pd.Series, missing: np.ndarray):
    numbers, bad, reason = parse_number(raw, missing)
    if isinstance(reason, str) and reason == rules.NOT_NUMBER_BOOL:
        return pd.Series(pd.array([pd.NA] * len(raw), dtype="Int64")), bad, reason
    arr = numbers.to_numpy(na_value=np.nan)
    huge = ~bad & (np.abs(np.nan_to_num(arr)) > LARGEST_EXACT_INTEGER)
    fractional = ~bad & ~huge & ~np.isnan(arr) & (np.mod(np.nan_to_num(arr), 1) != 0)
    # An unreadable value keeps the number's own reason; a readable one is too large or fractional.
    unreadable = np.broadcast_to(np.asarray(reason, dtype=object), arr.shape)
    reasons = np.where(huge, rules.TOO_LARGE, np.where(bad, unreadable, rules.NOT_WHOLE)).astype(object)
    bad = bad | fractional | huge
    ints = pd.Series(np.where(bad | np.isnan(arr), np.nan, arr)).round().astype("Int64")
    return ints, bad, reasons


def _parse_boolean(raw: pd.Series, missing: np.ndarray):
    if pd.api.types.is_bool_dtype(raw.dtype):
        return raw.astype("boolean"), np.zeros(len(raw), bool), ""

    def one(v):
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, (int, np.integer)) and v in (0, 1):
            return bool(v)
        if isinstance(v, str) and v.strip().lower() in TRUE_TEXT | FALSE_TEXT:
            return v.strip().lower() in TRUE_TEXT
        return None

    parsed = raw.map(lambda v: None if v is None or (not isinstance(v, str) and pd.isna(v)) else one(v))
    bad = parsed.isna().to_numpy() & ~missing
    return parsed.astype("boolean"), bad, rules.NOT_BOOLEAN


def parse_datetime(raw: pd.Series, missing: np.ndarray):
    """A column read as naive UTC datetime64[s]: (values, which could not be read, the reason).
    The record validator falls back on it for text only pandas reads, so both read moments alike."""
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        values = raw
        if getattr(raw.dt, "tz", None) is not None:
            values = raw.dt.tz_convert("UTC").dt.tz_localize(None)
        return values.astype("datetime64[s]"), np.zeros(len(raw), bool), ""
    # A date starts with its year: pandas would also read words such as "now" and "today".
    is_text = raw.map(lambda v: isinstance(v, str) and v[:1].isdigit()).to_numpy(dtype=bool)
    text = raw.where(pd.Series(is_text), None)
    parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    parsed = parsed.dt.tz_localize(None).astype("datetime64[s]")
    bad = parsed.isna().to_numpy() & ~missing
    return parsed, bad, rules.NOT_DATETIME


def _parse_date(raw: pd.Series, missing: np.ndarray):
    parsed, bad, _ = parse_datetime(raw, missing)
    has_time = (parsed != parsed.dt.normalize()).to_numpy(dtype=bool, na_value=False)
    return parsed, bad | has_time, rules.NOT_DATE


_PARSERS = {
    "string": _parse_string,
    "number": parse_number,
    "integer": _parse_integer,
    "boolean": _parse_boolean,
    "datetime": parse_datetime,
    "date": _parse_date,
}


def _cross_field_checks(typed: dict[str, pd.Series], frame: pd.DataFrame, claim_ids: pd.Series,
                        as_of: pd.Timestamp | None, unique: bool = True) -> list[pd.DataFrame]:
    """Rules across fields (features.record_spec): field against field, against the clock, one row per claim."""
    found = []
    for rule in rules.CROSS_FIELD_RULES:
        if rule.field in typed and rule.other in typed:
            broken = _as_mask(rule.breaks(typed[rule.field], typed[rule.other]))
            rows = np.flatnonzero(broken)
            reasons = np.full(len(broken), None, dtype=object)
            reasons[rows] = [rule.reason(rule.other, other) for other in typed[rule.other].iloc[rows]]
            found.append(_issues(broken, claim_ids, rule.field, frame[rule.field], reasons))
    if as_of is not None:
        horizon = rules.horizon(pd.Timestamp(as_of))
        for name in rules.NOT_IN_FUTURE:
            if name in typed:
                future = (typed[name] > horizon).to_numpy(dtype=bool, na_value=False)
                found.append(_issues(future, claim_ids, name, frame[name], rules.IN_FUTURE))
    name = rules.UNIQUE_IN_BATCH
    if unique and name in typed:
        dup = typed[name].duplicated(keep=False).to_numpy() & typed[name].notna().to_numpy()
        found.append(_issues(dup, claim_ids, name, frame[name], rules.DUPLICATE))
    return found
