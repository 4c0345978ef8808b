"""The feature builder: canonical claims (plus entity history) in, a numeric model matrix out.

Shaped like a scikit-learn transformer: `fit` learns what it needs from training claims only
(category vocabularies or code encodings, typical amounts per loss type, which features the data
can support, and why the others were left out); `transform` is pure given that state, for one
claim or millions, offline and online alike.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Literal

import numpy as np
import pandas as pd

from features.graph import (GRAPH_FEATURES, GRAPH_LABELS, LINK_FIELDS, OUTCOME_TIME_FIELD, GraphReport, GraphSettings,
                            graph_features)
from features.history import PERSON_FIELDS, TIME_FIELDS, history_feature_requirements, history_features, history_pool
from features.schema import FIELD_NAMES, FIELDS_BY_NAME

SECONDS_PER_DAY = 86_400
Kind = Literal["numeric", "categorical"]
Columns = dict[str, np.ndarray]
# How precisely a date field is known, coarsest first.
PRECISIONS = ("year", "month", "week", "day", "second")
FULL_PRECISION = {"date": "day", "datetime": "second"}
# How a categorical feature reaches the model: "auto" picks "category" or "target" by its levels.
ENCODINGS = ("auto", "category", "target", "frequency")
# A categorical feature read as a number is labelled with one of these after its own label; the
# reasons (models/reasons.py) read it to say what the model read instead of a bare number.
ENCODED_LABEL_SUFFIX = {"target": ", read as its fraud rate in the training claims",
                        "frequency": ", read as its share of the training claims"}
# Folds for the out-of-fold target encoding of the training claims (scikit-learn's default).
TARGET_ENCODING_FOLDS = 5


@dataclass(frozen=True)
class FeatureSpec:
    """One model feature: its name, kind, the claim fields it needs and how an adjuster reads it."""

    name: str
    kind: Kind
    requires: tuple[str, ...]
    label: str
    unit: str = ""
    source: str = "claim"  # claim | history | passthrough


def _days(cols: Columns, later: str, earlier: str) -> np.ndarray:
    return cols[later] - cols[earlier]


def _ratio(cols: Columns, top: str, bottom: str) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = cols[top] / cols[bottom]
    return np.where(np.isfinite(out), out, np.nan)


def _hour_of_day(days: np.ndarray) -> np.ndarray:
    # Round to whole seconds first: days are float, and 10:00 must not read as 9.999 h.
    seconds_into_day = np.round(np.mod(days, 1.0) * SECONDS_PER_DAY)
    return np.floor(seconds_into_day / 3600)


def _weekday(days: np.ndarray) -> np.ndarray:
    # Day 0 of our epoch (1900-01-01) was a Monday, so Monday = 0 as in Python's weekday().
    return np.where(np.isnan(days), np.nan, np.mod(np.floor(days), 7))


CLAIM_FEATURES: dict[str, tuple[FeatureSpec, Callable[[Columns], np.ndarray]]] = {
    spec.name: (spec, fn) for spec, fn in [
        (FeatureSpec("line_of_business", "categorical", ("line_of_business",), "line of business"),
         lambda c: c["line_of_business"]),
        (FeatureSpec("loss_type", "categorical", ("loss_type",), "type of loss"), lambda c: c["loss_type"]),
        (FeatureSpec("region", "categorical", ("region",), "region"), lambda c: c["region"]),
        (FeatureSpec("claim_amount", "numeric", ("claim_amount",), "amount claimed", "currency"),
         lambda c: c["claim_amount"]),
        (FeatureSpec("amount_to_typical_for_loss_type", "numeric", ("claim_amount", "loss_type"),
                     "amount compared with the typical claim of this loss type", "times"),
         lambda c: c["amount_to_typical_for_loss_type"]),
        (FeatureSpec("amount_to_premium", "numeric", ("claim_amount", "annual_premium"),
                     "amount compared with the annual premium", "times"),
         lambda c: _ratio(c, "claim_amount", "annual_premium")),
        (FeatureSpec("amount_to_coverage_limit", "numeric", ("claim_amount", "coverage_limit"),
                     "amount as a share of the coverage limit", "share"),
         lambda c: _ratio(c, "claim_amount", "coverage_limit")),
        (FeatureSpec("deductible", "numeric", ("deductible",), "deductible", "currency"), lambda c: c["deductible"]),
        (FeatureSpec("coverage_limit", "numeric", ("coverage_limit",), "coverage limit", "currency"),
         lambda c: c["coverage_limit"]),
        (FeatureSpec("annual_premium", "numeric", ("annual_premium",), "annual premium", "currency"),
         lambda c: c["annual_premium"]),
        (FeatureSpec("policy_age_days", "numeric", ("loss_date", "policy_start_date"),
                     "days from policy start to the loss", "days"),
         lambda c: _days(c, "loss_date", "policy_start_date")),
        (FeatureSpec("report_delay_days", "numeric", ("report_date", "loss_date"),
                     "days from the loss to the report", "days"),
         lambda c: _days(c, "report_date", "loss_date")),
        (FeatureSpec("loss_weekday", "numeric", ("loss_date",), "weekday of the loss (Monday = 0)"),
         lambda c: _weekday(c["loss_date"])),
        (FeatureSpec("report_hour", "numeric", ("report_date",), "hour of day the claim was reported"),
         lambda c: _hour_of_day(c["report_date"])),
        (FeatureSpec("loss_hour", "numeric", ("loss_hour",), "hour of day of the loss"), lambda c: c["loss_hour"]),
        (FeatureSpec("police_report", "numeric", ("police_report",), "police report filed"),
         lambda c: c["police_report"]),
        (FeatureSpec("attorney_involved", "numeric", ("attorney_involved",), "attorney involved"),
         lambda c: c["attorney_involved"]),
        (FeatureSpec("witnesses", "numeric", ("witnesses",), "number of witnesses"), lambda c: c["witnesses"]),
        (FeatureSpec("injuries", "numeric", ("injuries",), "number of injuries"), lambda c: c["injuries"]),
        (FeatureSpec("vehicles_involved", "numeric", ("vehicles_involved",), "vehicles involved"),
         lambda c: c["vehicles_involved"]),
        (FeatureSpec("claimant_age", "numeric", ("claimant_age",), "claimant's age", "years"),
         lambda c: c["claimant_age"]),
        (FeatureSpec("customer_tenure_days", "numeric", ("loss_date", "customer_since"),
                     "days the claimant had been a customer at the loss", "days"),
         lambda c: _days(c, "loss_date", "customer_since")),
    ]
}

_HISTORY_LABELS = {
    "claimant_claims_90d": "claims by the same claimant in the previous 90 days",
    "claimant_claims_365d": "claims by the same claimant in the previous 365 days",
    "policy_claims_90d": "claims on the same policy in the previous 90 days",
    "policy_claims_365d": "claims on the same policy in the previous 365 days",
    "provider_claims_90d": "claims handled by the same provider in the previous 90 days",
    "provider_claims_365d": "claims handled by the same provider in the previous 365 days",
    "days_since_claimant_last_claim": "days since the claimant's previous claim",
    "payee_account_other_claimants": "other claimants paid into the same bank account before",
    "phone_other_claimants": "other claimants who gave the same phone number before",
    "address_other_claimants": "other claimants at the same address before",
}
HISTORY_FEATURES: dict[str, FeatureSpec] = {
    name: FeatureSpec(name, "numeric", needs, _HISTORY_LABELS[name], source="history")
    for name, needs in history_feature_requirements().items()
}
# The claim graph's features (features/graph.py) are history too: counted from earlier claims,
# offline over the training frame and online from the claim store.
HISTORY_FEATURES.update({name: FeatureSpec(name, "numeric", ("report_date", *LINK_FIELDS), GRAPH_LABELS[name],
                                           source="history") for name in GRAPH_FEATURES})

# The least precision each feature needs of its date fields; fields not named here have their full
# precision (a mapping says when they do not). An hour needs the time of day and a weekday the day
# itself (a date known to the week says nothing of its weekday). Day counts and the 90/365-day
# history windows are off by a few days at most when dates are known to the week, small beside the
# spans they measure; known only to the month, they are off by up to a month.
PRECISION_NEEDED: dict[str, dict[str, str]] = {
    "report_hour": {"report_date": "second"},
    "loss_weekday": {"loss_date": "day"},
    "policy_age_days": {"loss_date": "week", "policy_start_date": "week"},
    "report_delay_days": {"report_date": "week", "loss_date": "week"},
    "customer_tenure_days": {"loss_date": "week", "customer_since": "week"},
    **{name: {"report_date": "week"} for name in HISTORY_FEATURES},
}
assert PRECISION_NEEDED.keys() <= CLAIM_FEATURES.keys() | HISTORY_FEATURES.keys()


@dataclass(frozen=True)
class CodeEncoding:
    """A categorical feature read as a number: each training level's value, one for the others."""

    method: str  # "target" (smoothed fraud rate) or "frequency" (share of training claims)
    values: dict[str, float]
    unseen: float
    missing: float

    def read(self, levels: np.ndarray) -> np.ndarray:
        """The numbers for an array of levels (None or NaN where missing)."""
        missing = pd.isna(levels)
        found = pd.Series(levels, dtype=object).map(self.values).to_numpy(dtype=np.float64, na_value=np.nan)
        return np.where(missing, self.missing, np.where(np.isnan(found), self.unseen, found))

    def read_one(self, level: str | None) -> float:
        """The number for one level, exactly as `read` gives it."""
        return self.missing if level is None or level != level else self.values.get(level, self.unseen)


def _extract_label(name: str) -> str:
    return name.removeprefix("extra_").replace("_", " ")


_EPOCH_1900 = datetime(1900, 1, 1)
_ONE_SECOND = timedelta(seconds=1)


def _divide(top: float, bottom: float) -> float:
    """IEEE division as numpy does it (x/0 is inf or NaN, never an exception)."""
    if bottom == 0.0:
        return math.nan if top == 0.0 or math.isnan(top) else math.copysign(math.inf, top) * math.copysign(1.0, bottom)
    return top / bottom


def _record_ratio(cols: dict, top: str, bottom: str) -> float:
    out = _divide(cols[top], cols[bottom])
    return out if math.isfinite(out) else math.nan


def _record_weekday(days: float) -> float:
    return math.nan if math.isnan(days) else float(math.floor(days) % 7)


def _record_hour(days: float) -> float:
    if math.isnan(days):
        return math.nan
    return float(math.floor(round((days % 1.0) * SECONDS_PER_DAY) / 3600))


# The claim features of CLAIM_FEATURES, one claim at a time; features that are a field as-is
# are read directly.
_RECORD_DIRECT = frozenset({
    "line_of_business", "loss_type", "region", "claim_amount", "amount_to_typical_for_loss_type", "deductible",
    "coverage_limit", "annual_premium", "loss_hour", "police_report", "attorney_involved", "witnesses",
    "injuries", "vehicles_involved", "claimant_age"})
_RECORD_FEATURES: dict[str, Callable[[dict], float]] = {
    "amount_to_premium": lambda c: _record_ratio(c, "claim_amount", "annual_premium"),
    "amount_to_coverage_limit": lambda c: _record_ratio(c, "claim_amount", "coverage_limit"),
    "policy_age_days": lambda c: c["loss_date"] - c["policy_start_date"],
    "report_delay_days": lambda c: c["report_date"] - c["loss_date"],
    "loss_weekday": lambda c: _record_weekday(c["loss_date"]),
    "report_hour": lambda c: _record_hour(c["report_date"]),
    "customer_tenure_days": lambda c: c["loss_date"] - c["customer_since"],
}
assert _RECORD_DIRECT | _RECORD_FEATURES.keys() == CLAIM_FEATURES.keys(), "every claim feature needs a record form"


# Prefix of a column holding a history feature counted before the claims reach the builder.
PRECOUNTED = "_history_"


class FeatureBuilder:
    """Turns canonical claims into the model matrix; fit on training claims only."""

    def __init__(self, passthrough_categorical: tuple[str, ...] = (), passthrough_numeric: tuple[str, ...] = (),
                 field_precision: dict[str, str] | None = None, encodings: dict[str, str] | None = None,
                 max_category_levels: int | None = None, target_smoothing: float = 20.0, random_state: int = 0,
                 graph: GraphSettings | None = None):
        self.passthrough_categorical = tuple(passthrough_categorical)
        self.passthrough_numeric = tuple(passthrough_numeric)
        self.field_precision = field_precision
        self.encodings = encodings
        self.max_category_levels = max_category_levels  # None: every categorical stays a category
        self.target_smoothing = target_smoothing
        self.random_state = random_state
        self.graph = graph or GraphSettings()

    @property
    def graph_settings(self) -> GraphSettings:
        """How the claim graph links claims (bundles made before the graph have the defaults)."""
        return getattr(self, "graph", None) or GraphSettings()

    def fit(self, claims: pd.DataFrame) -> "FeatureBuilder":
        """Learn vocabularies, code encodings and typical amounts; keep only features the data can support.

        Target encoding reads the `is_fraud` label of the training claims."""
        self._check_settings()
        present = {c for c in claims.columns if claims[c].notna().any()}
        self.fields_seen_ = [f for f in FIELD_NAMES if f in present]
        # History places claims by their report, else their loss, and tells people apart by the
        # claimant, else the policy (features.history.TIME_FIELDS, PERSON_FIELDS).
        self.history_time_ = next((f for f in TIME_FIELDS if f in present), TIME_FIELDS[0])
        self.history_person_ = next((f for f in PERSON_FIELDS if f in present), PERSON_FIELDS[0])
        self.dropped_features_: dict[str, str] = {}
        specs = []
        for spec in self._candidate_specs():
            reason = self._unsupported(spec, present)
            if reason is None:
                specs.append(spec)
            else:
                self.dropped_features_[spec.name] = reason
        self.typical_amount_ = self._typical_amounts(claims) if {"loss_type", "claim_amount"} <= present else {}
        self._keep(specs, claims)
        self.encoded_: dict[str, CodeEncoding] = {}
        self.graph_report_ = GraphReport()
        self._drop_constant(claims)
        self._encode_many_levelled(claims)
        return self

    def _check_settings(self) -> None:
        """Field precisions and encodings must name real fields, features and choices."""
        problems = []
        for name, level in (self.field_precision or {}).items():
            field = FIELDS_BY_NAME.get(name)
            if field is None or field.kind not in FULL_PRECISION:
                problems.append(f"field_precision: {name!r} is not a date field")
                continue
            possible = PRECISIONS[:PRECISIONS.index(FULL_PRECISION[field.kind]) + 1]
            if level not in possible:
                problems.append(f"field_precision: {name} is a {field.kind} field, known to one of "
                                f"{', '.join(possible)}; not {level!r}")
        categorical = {s.name for s in self._candidate_specs() if s.kind == "categorical"}
        for name, how in (self.encodings or {}).items():
            if name not in categorical:
                problems.append(f"encodings: {name!r} is not a categorical feature; those are "
                                f"{', '.join(sorted(categorical))}")
            elif how not in ENCODINGS:
                problems.append(f"encodings: {name} must be one of {', '.join(ENCODINGS)}, not {how!r}")
        if problems:
            raise ValueError("; ".join(problems))

    def _candidate_specs(self) -> list[FeatureSpec]:
        time, person = getattr(self, "history_time_", "report_date"), getattr(self, "history_person_", "claimant_id")
        specs = [s for s, _ in CLAIM_FEATURES.values()]
        specs += [dataclasses.replace(HISTORY_FEATURES[name], requires=needs)
                  for name, needs in history_feature_requirements(time, person).items()]
        links = self.graph_settings.link_fields
        specs += [dataclasses.replace(HISTORY_FEATURES[name], requires=(time, *links)) for name in GRAPH_FEATURES]
        # A passed-through column reads by its own name in the extract (extra_insured_hobbies: "insured hobbies").
        specs += [FeatureSpec(c, "categorical", (c,), _extract_label(c), source="passthrough")
                  for c in self.passthrough_categorical]
        specs += [FeatureSpec(c, "numeric", (c,), _extract_label(c), source="passthrough")
                  for c in self.passthrough_numeric]
        return specs

    def _unsupported(self, spec: FeatureSpec, present: set[str]) -> str | None:
        """Why the training claims cannot support a feature (a field absent or too coarse), or None."""
        if spec.name in GRAPH_FEATURES:
            return self._graph_unsupported(spec, present)
        absent = [f for f in spec.requires if f not in present]
        if absent:
            return f"no training claim has {' or '.join(absent)}"
        return self._too_coarse(spec)

    def _too_coarse(self, spec: FeatureSpec) -> str | None:
        """Why the feature's date fields are known too coarsely for it (PRECISION_NEEDED), or None."""
        for field, needed in PRECISION_NEEDED.get(spec.name, {}).items():
            if spec.source == "history" and field == "report_date":
                field = getattr(self, "history_time_", field)  # the time history is counted by
            known = self._precision(field)
            if PRECISIONS.index(known) < PRECISIONS.index(needed):
                return f"{field} is {known}-level; this feature needs {needed} or better"
        return None

    def _graph_unsupported(self, spec: FeatureSpec, present: set[str]) -> str | None:
        """A graph feature needs the claims' time and one identity at least; the fraud share, the
        times fraud was confirmed (`OUTCOME_TIME_FIELD`, an outcome: never a request field)."""
        time, links = spec.requires[0], spec.requires[1:]
        if time not in present:
            return f"no training claim has {time}"
        if not links:
            return "the claim graph links no field (its link_fields are empty)"
        if not any(f in present for f in links):
            return f"no training claim has any of {', '.join(links)}"
        if spec.name == "ring_fraud_share" and OUTCOME_TIME_FIELD not in present:
            return f"no training claim has {OUTCOME_TIME_FIELD} (when an investigation confirmed its fraud)"
        return self._too_coarse(spec)

    def _precision(self, field: str) -> str:
        return (self.field_precision or {}).get(field) or FULL_PRECISION[FIELDS_BY_NAME[field].kind]

    def _keep(self, specs: list[FeatureSpec], claims: pd.DataFrame) -> None:
        """Set the features kept and what they read: names, input fields, category vocabularies."""
        self.specs_ = specs
        self.feature_names_ = [s.name for s in specs]
        self.input_fields_ = sorted({f for s in specs for f in s.requires})
        self.categories_ = {
            s.name: np.sort(claims[s.requires[0]].dropna().astype("str").unique()).astype(object)
            for s in specs if s.kind == "categorical"
        }

    def _drop_constant(self, claims: pd.DataFrame) -> None:
        """Leave out features with one value (or none) in the training claims: nothing to learn from."""
        matrix = self.transform(claims, graph_report=self.graph_report_)
        kept = []
        for j, spec in enumerate(self.specs_):
            column = matrix[:, j]
            missing = np.isnan(column)
            if missing.all():
                self.dropped_features_[spec.name] = "missing in every training claim"
            elif (column == column[0]).all():  # NaN equals nothing: a value and missing ones are two
                shown = repr(str(self.categories_[spec.name][int(column[0])])) if spec.kind == "categorical" \
                    else f"{column[0]:g}"
                self.dropped_features_[spec.name] = f"constant in the training claims (every value {shown})"
            else:
                kept.append(spec)
        self._keep(kept, claims)

    def _encode_many_levelled(self, claims: pd.DataFrame) -> None:
        """Categorical features with too many levels to learn each one (or asked so) become numbers."""
        for j, spec in enumerate(self.specs_):
            if spec.kind != "categorical":
                continue
            method = self._encoding(spec)
            if method == "category":
                continue
            levels = claims[spec.requires[0]].to_numpy(dtype=object, na_value=None)
            self.encoded_[spec.name] = (self._target_encoding(levels, self._is_fraud(claims, spec))
                                        if method == "target" else self._frequency_encoding(levels))
            self.specs_[j] = dataclasses.replace(spec, label=spec.label + ENCODED_LABEL_SUFFIX[method])
            del self.categories_[spec.name]

    def _encoding(self, spec: FeatureSpec) -> str:
        asked = (self.encodings or {}).get(spec.name, "auto")
        if asked != "auto":
            return asked
        # Each level of a native category needs enough claims of both outcomes to earn its own
        # branch; past a few dozen levels most have too few and the trees fit their noise.
        many = self.max_category_levels is not None and len(self.categories_[spec.name]) > self.max_category_levels
        return "target" if many else "category"

    @staticmethod
    def _is_fraud(claims: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
        if "is_fraud" not in claims.columns or claims["is_fraud"].isna().any():
            raise ValueError(f"target encoding of {spec.name} needs the is_fraud label on every training claim")
        return claims["is_fraud"].to_numpy(dtype=bool)

    def _target_encoding(self, levels: np.ndarray, is_fraud: np.ndarray) -> CodeEncoding:
        """Each level's fraud rate among these claims, shrunk towards the rate of all of them by
        `target_smoothing` claims' worth (scikit-learn's TargetEncoder with that `smooth`): a level
        seen twice says little, one seen 2,000 times a lot. Unseen and missing levels read as the
        overall rate."""
        prior = float(is_fraud.mean())
        known = ~pd.isna(levels)
        codes, names = pd.factorize(levels[known])
        claims = np.bincount(codes, minlength=len(names))
        frauds = np.bincount(codes, weights=is_fraud[known], minlength=len(names))
        rates = (frauds + self.target_smoothing * prior) / (claims + self.target_smoothing)
        return CodeEncoding("target", dict(zip(map(str, names), rates.tolist())), prior, prior)

    @staticmethod
    def _frequency_encoding(levels: np.ndarray) -> CodeEncoding:
        """Each level's share of the training claims; unseen levels 0, missing ones missing."""
        counts = pd.Series(levels, dtype=object).dropna().astype("str").value_counts()
        return CodeEncoding("frequency", {str(k): float(v) / len(levels) for k, v in counts.items()}, 0.0, math.nan)

    def out_of_fold(self, claims: pd.DataFrame, matrix: np.ndarray) -> np.ndarray:
        """`matrix` (the transform of the training claims `fit` saw) with each target-encoded column
        replaced by cross-fitted values: each claim's code read from the other folds' claims only,
        so the trees never meet a claim's own label inside its code's fraud rate."""
        from sklearn.model_selection import StratifiedKFold

        out = matrix.copy()
        for j, spec in enumerate(self.specs_):
            encoding = self._encoded.get(spec.name)
            if encoding is None or encoding.method != "target":
                continue
            levels = claims[spec.requires[0]].to_numpy(dtype=object, na_value=None)
            is_fraud = self._is_fraud(claims, spec)
            folds = StratifiedKFold(TARGET_ENCODING_FOLDS, shuffle=True, random_state=self.random_state)
            for fitted, held_out in folds.split(levels, is_fraud):
                out[held_out, j] = self._target_encoding(levels[fitted], is_fraud[fitted]).read(levels[held_out])
        return out

    @property
    def _encoded(self) -> dict[str, CodeEncoding]:
        return getattr(self, "encoded_", {})  # bundles pickled before code encodings have none

    @property
    def categorical_indices_(self) -> list[int]:
        """Columns LightGBM reads as categories (encoded categorical features are numbers)."""
        encoded = self._encoded
        return [i for i, s in enumerate(self.specs_) if s.kind == "categorical" and s.name not in encoded]

    @staticmethod
    def _typical_amounts(claims: pd.DataFrame) -> dict[str, float]:
        # The median, not the mean: a handful of catastrophic claims must not set "typical".
        medians = claims.groupby(claims["loss_type"].astype("str"))["claim_amount"].median()
        return {str(k): float(v) for k, v in medians.items()}

    def transform(self, claims: pd.DataFrame, history: pd.DataFrame | None = None,
                  history_values: dict[str, np.ndarray] | None = None,
                  graph_report: GraphReport | None = None) -> np.ndarray:
        """The float64 model matrix (rows = claims, columns = `feature_names_`).

        History features are counted over `history` (earlier claims; default the claims
        themselves), unless `history_values` gives them already counted (the claim store does)."""
        if history_values is None:
            history_values = self.history_values(claims, history, graph_report)
        return self._matrix(self._columns(claims), len(claims), history_values)

    def history_values(self, claims: pd.DataFrame, history: pd.DataFrame | None = None,
                       graph_report: GraphReport | None = None) -> dict[str, np.ndarray]:
        """The history features the model reads, counted over `history` (default: the claims themselves).

        Claims that carry their history features already counted, as `PRECOUNTED + name` columns (the
        Spark engine counts them over a whole book, then training fits on a sample of it), keep those."""
        wanted = [s.name for s in self.specs_ if s.source == "history"]
        if history is None and wanted and all(PRECOUNTED + name in claims.columns for name in wanted):
            return {name: claims[PRECOUNTED + name].to_numpy(dtype=np.float64, na_value=np.nan) for name in wanted}
        counted = [name for name in wanted if name not in GRAPH_FEATURES]
        linked = [name for name in wanted if name in GRAPH_FEATURES]
        out = history_features(claims, history, counted) if counted else {}
        if linked:
            pool = history_pool(claims, history)
            out.update(graph_features(pool, slice(len(pool) - len(claims), len(pool)), self.graph_settings, linked,
                                      graph_report))
        return out

    def transform_records(self, claims: list[dict], history_values: dict[str, np.ndarray]) -> np.ndarray:
        """Validated claims (canonical Python values, as `validate_record` gives them) to the model
        matrix, with their history features already counted: `transform` without building a frame.

        The columns are made from the Python values directly and go through the same vectorised
        features as `transform`, so the two agree bit for bit (tests hold them side by side)."""
        return self._matrix(self._record_list_columns(claims), len(claims), history_values)

    def _matrix(self, cols: Columns, n: int, history_values: dict[str, np.ndarray]) -> np.ndarray:
        matrix = np.empty((n, len(self.specs_)), dtype=np.float64)
        encoded = self._encoded
        for j, spec in enumerate(self.specs_):
            if spec.source == "history":
                matrix[:, j] = history_values[spec.name]
                continue
            values = cols[spec.name] if spec.source == "passthrough" else CLAIM_FEATURES[spec.name][1](cols)
            if spec.name in encoded:
                values = encoded[spec.name].read(values)
            elif spec.kind == "categorical":
                values = self._encode(spec, values)
            matrix[:, j] = values
        return matrix

    def transform_record(self, claim: dict, history: dict[str, float] | None = None) -> np.ndarray:
        """One validated claim (canonical Python values) to a 1-row model matrix, without pandas.

        The online fast path: the same numbers as `transform` gives for a one-row frame, bit for
        bit (tests hold the two side by side). `history` maps history feature names to values.
        """
        cols = self._record_columns(claim)
        history = history or {}
        encoded = self._encoded
        row = np.empty((1, len(self.specs_)), dtype=np.float64)
        for j, spec in enumerate(self.specs_):
            if spec.source == "history":
                value = history.get(spec.name, math.nan)
            elif spec.source == "passthrough" or spec.name in _RECORD_DIRECT:
                value = cols[spec.name]
            else:
                value = _RECORD_FEATURES[spec.name](cols)
            if spec.name in encoded:
                value = encoded[spec.name].read_one(value)
            elif spec.kind == "categorical":
                value = self._record_codes[spec.name].get(value, math.nan) if value is not None else math.nan
            row[0, j] = value
        return row

    @functools.cached_property
    def _record_codes(self) -> dict[str, dict[str, float]]:
        """Each category's code, for one claim at a time (built on first use: also for older bundles)."""
        return {name: {str(c): float(i) for i, c in enumerate(cats)} for name, cats in self.categories_.items()}

    def _record_columns(self, claim: dict) -> dict:
        """`_columns` for one claim: numbers as float (NaN when absent), dates as days since 1900, text."""
        cols = {}
        for name in self.input_fields_:
            value = claim.get(name)
            if isinstance(value, datetime):
                cols[name] = (value - _EPOCH_1900) // _ONE_SECOND / SECONDS_PER_DAY
            elif value is None:
                cols[name] = math.nan if self._is_numeric_field(name) else None
            elif isinstance(value, str):
                cols[name] = value
            else:
                cols[name] = float(value)
        if "loss_type" in cols and "claim_amount" in cols:
            typical = self.typical_amount_.get(cols["loss_type"], math.nan) if cols["loss_type"] is not None \
                else math.nan
            cols["amount_to_typical_for_loss_type"] = _divide(cols["claim_amount"], typical)
        return cols

    def transform_frame(self, claims: pd.DataFrame, history: pd.DataFrame | None = None) -> pd.DataFrame:
        """The model matrix as a labelled frame (categories decoded), for notebooks and reports."""
        frame = pd.DataFrame(self.transform(claims, history), columns=self.feature_names_, index=claims.index)
        for name, cats in self.categories_.items():
            codes = frame[name].to_numpy()
            frame[name] = pd.Categorical.from_codes(np.where(np.isnan(codes), -1, codes).astype(int), categories=cats)
        return frame

    def _is_numeric_field(self, name: str) -> bool:
        field = FIELDS_BY_NAME.get(name)
        if field is None:  # a passed-through extra column
            return name in self.passthrough_numeric
        return field.kind != "string"

    def _encode(self, spec: FeatureSpec, values: np.ndarray) -> np.ndarray:
        codes = pd.Categorical(values, categories=self.categories_[spec.name]).codes.astype(np.float64)
        codes[codes < 0] = np.nan  # unseen or missing category: LightGBM's missing branch
        return codes

    def _record_list_columns(self, claims: list[dict]) -> Columns:
        """`_columns` for validated Python values: numbers as float64 (NaN when absent), dates as
        days since 1900, text as objects (None when absent)."""
        cols: Columns = {}
        for name in self.input_fields_:
            values = [claim.get(name) for claim in claims]
            present = next((v for v in values if v is not None), None)
            if isinstance(present, datetime):
                cols[name] = np.array([math.nan if v is None else (v - _EPOCH_1900) // _ONE_SECOND / SECONDS_PER_DAY
                                       for v in values], dtype=np.float64)
            elif isinstance(present, str) or (present is None and not self._is_numeric_field(name)):
                cols[name] = np.array(values, dtype=object)
            else:
                cols[name] = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
        self._add_typical_amount(cols)
        return cols

    def _columns(self, claims: pd.DataFrame) -> Columns:
        """Each needed input field as a float64 array (dates as days since 1900) or text array."""
        cols: Columns = {}
        for name in self.input_fields_:
            if name not in claims.columns:
                # An optional field left out of a request is missing for every claim, not an error.
                cols[name] = np.full(len(claims), np.nan if self._is_numeric_field(name) else None)
                continue
            series = claims[name]
            if pd.api.types.is_datetime64_any_dtype(series.dtype):
                secs = series.to_numpy(dtype="datetime64[s]")
                days = (secs - np.datetime64("1900-01-01T00:00:00", "s")).astype(np.int64) / SECONDS_PER_DAY
                cols[name] = np.where(np.isnat(secs), np.nan, days)
            elif pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
                cols[name] = series.to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                cols[name] = series.to_numpy(dtype=object, na_value=None)
        self._add_typical_amount(cols)
        return cols

    def _add_typical_amount(self, cols: Columns) -> None:
        if "loss_type" in cols and "claim_amount" in cols:
            typical = pd.Series(cols["loss_type"]).map(self.typical_amount_).to_numpy(dtype=np.float64, na_value=np.nan)
            with np.errstate(divide="ignore", invalid="ignore"):
                cols["amount_to_typical_for_loss_type"] = cols["claim_amount"] / typical
