"""From input rows to output rows, a batch at a time: the code both bulk engines run.

`BatchPreparer.prepare` turns rows as read (canonical claims, or for a version trained through a
dataset mapping, rows in the extract's own columns) into validated, typed claims and the rejected
rows' problems. `BulkScorer.score` turns validated claims and their already counted history features
into decisions, scores, rule hits and (with `explain`) the top reasons per model. The local engine
runs them over the whole input; the Spark engine inside `mapInPandas`, partition by partition. Each
row's result depends on that row and its history features only, so the two write the same values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import record_spec as rules
from features.mapping import column_text, map_frame
from features.schema import OUTCOME_TIME_FIELD, ClaimField
from features.validation import show_value, validate_claims
from models.bundle import TriageBundle
from models.explain import MODELS, Explainer
from serving.scoring import TOP_REASONS
from serving.shapes import EXTRACT, SOURCE_VALUE_CHARS, RecordShapes

# Where each input row came from: its file (or table) and its 0-based row there (None where the
# engine cannot know it: Spark reading CSV or a table). Carried beside the claim through validation.
SOURCE, ROW = "_source", "_row"
POSITION = (SOURCE, ROW)
SCORE_COLUMNS = ("claim_id", "decision", "approval_probability", "fraud_probability", "anomaly_score",
                 "rule_hits", "model_version")
REASON_COLUMNS = tuple(f"{model}_reasons" for model in MODELS)
REJECTED_COLUMNS = ("source", "row", "claim_id", "column", "value", "reason")


def output_columns(explain: bool) -> tuple[str, ...]:
    return SCORE_COLUMNS + REASON_COLUMNS if explain else SCORE_COLUMNS


@dataclass
class Prepared:
    """A batch after mapping and validation: its valid claims (typed, with SOURCE and ROW), the
    problems of its rejected rows, and the key of every row that reached validation (its place, its
    typed claim id, how an error names it) for the check that claim ids are unique over the input."""

    claims: pd.DataFrame
    rejected: pd.DataFrame
    keys: pd.DataFrame


class BatchPreparer:
    """Rows as read to validated claims and rejected rows, as the bundle's service takes records."""

    def __init__(self, bundle: TriageBundle | None = None, fields: tuple[ClaimField, ...] = (),
                 labels: tuple[str, ...] = ()):
        """A bundle's claims to score (its fields, its mapping), or without a bundle, claims held to
        `fields` and `labels` (a training extract, as `training.data.training_fields` gives them)."""
        self.fields = bundle.claim_fields if bundle is not None else tuple(fields)
        self.labels = tuple(labels)
        self.shapes = RecordShapes(getattr(bundle, "mapping", None), self.fields)
        mapping = self.shapes.mapping
        # A mapped field's problems are named by the extract columns it comes from.
        self.source_of = {} if mapping is None else {
            f.name: mapping.source_columns(f.name) for f in self.fields if f.name in mapping.fields}

    def extract_shaped(self, columns) -> bool:
        """Whether an input with these columns is in the extract's shape (a mapping-trained version only)."""
        return self.shapes.shape_of(dict.fromkeys(c for c in columns if c not in POSITION)) == EXTRACT

    def columns_not_read(self, columns) -> list[str]:
        """Input columns no feature reads: said in the run's summary, never an error."""
        if self.extract_shaped(columns):
            known = self.shapes.extract_keys
        else:
            known = {f.name for f in self.fields} | {OUTCOME_TIME_FIELD.name}
        return sorted(c for c in columns if c not in known and c not in POSITION)

    def prepare(self, raw: pd.DataFrame) -> Prepared:
        """Map (input in the extract's shape) and validate one batch. Claim ids are not checked for
        uniqueness here: `duplicated_keys` and `duplicate_rejections` do it over the whole input."""
        raw = raw.reset_index(drop=True)
        position = raw[list(POSITION)]
        data = raw.drop(columns=list(POSITION))
        rejected = []
        mapped = self.extract_shaped(data.columns)
        source = None  # the extract's own cells of the rows validated, for their problems' values
        if mapped:
            canonical, map_errors = map_frame(data, self.shapes.mapping)
            failed = np.array([bool(e) for e in map_errors], dtype=bool)
            if failed.any():
                rejected.append(self._mapping_rejections(data, position, map_errors, failed))
            source = data.loc[~failed].reset_index(drop=True)
            data, position = canonical.loc[~failed].reset_index(drop=True), position.loc[~failed].reset_index(drop=True)
        fields = self.fields
        if OUTCOME_TIME_FIELD.name in data.columns and OUTCOME_TIME_FIELD not in fields:
            fields += (OUTCOME_TIME_FIELD,)
        report = validate_claims(data, fields=fields, labels=self.labels, unique=False)
        if len(report.errors):
            rejected.append(self._rejections(report.errors, position, mapped, source))
        names = {f.name for f in fields} | set(self.labels)
        claims = report.claims[[c for c in report.claims.columns if c in names]]
        claims = claims.join(position.loc[report.valid_mask].set_axis(claims.index)).reset_index(drop=True)
        ids = report.typed_claim_ids if report.typed_claim_ids is not None else pd.Series([None] * len(data))
        raw_ids = data["claim_id"] if "claim_id" in data.columns else pd.Series([None] * len(data))
        keys = pd.DataFrame({SOURCE: position[SOURCE].to_numpy(dtype=object), ROW: position[ROW].to_numpy(),
                             "claim_id": ids.astype(object).where(ids.notna(), None).to_numpy(dtype=object),
                             "_id_text": raw_ids.astype("str").to_numpy(dtype=object),
                             "_id_shown": raw_ids.map(show_value).to_numpy(dtype=object)})
        keys["_mapped"] = mapped
        return Prepared(claims, rejected_frame(rejected), keys)

    def duplicate_rejections(self, keys: pd.DataFrame) -> pd.DataFrame:
        """The problem of each row whose claim id another row of the input has too (`keys` of those
        rows, from `duplicated_keys` or the Spark engine's count), as validation names it."""
        errors = pd.DataFrame({"row": np.arange(len(keys)), "claim_id": keys["_id_text"].to_numpy(dtype=object),
                               "column": rules.UNIQUE_IN_BATCH, "value": keys["_id_shown"].to_numpy(dtype=object),
                               "reason": rules.DUPLICATE})
        mapped = bool(len(keys)) and bool(keys["_mapped"].iat[0])
        return rejected_frame([self._rejections(errors, keys[list(POSITION)], mapped)])

    def _rejections(self, errors: pd.DataFrame, position: pd.DataFrame, mapped: bool,
                    source: pd.DataFrame | None = None) -> pd.DataFrame:
        """The validator's errors with each row's place in the input; for input in the extract's shape,
        a mapped field named by the extract columns it came from and, when it came from one column of
        `source` (the extract's rows as read), the value that column held, as the service reports it."""
        at = errors["row"].to_numpy(dtype=np.int64)
        column, reason = errors["column"].to_numpy(dtype=object), errors["reason"].to_numpy(dtype=object)
        value = errors["value"].to_numpy(dtype=object).copy()
        if mapped:
            named = [c in self.source_of for c in column]
            if source is not None:
                for field in {c for c, m in zip(column, named) if m}:
                    columns = self.source_of[field]
                    if len(columns) == 1 and columns[0] in source.columns:
                        these = np.flatnonzero(column == field)
                        cells = column_text(source[columns[0]].iloc[at[these]])
                        value[these] = [None if cell is None else cell[:SOURCE_VALUE_CHARS] for cell in cells]
            reason = np.array([f"{r} (as {c})" if m else r for r, c, m in zip(reason, column, named)], dtype=object)
            column = np.array([", ".join(self.source_of[c]) if m else c for c, m in zip(column, named)], dtype=object)
        return pd.DataFrame({"source": position[SOURCE].to_numpy(dtype=object)[at],
                             "row": position[ROW].to_numpy(dtype=object)[at],
                             "claim_id": errors["claim_id"].to_numpy(dtype=object), "column": column,
                             "value": value, "reason": reason})

    def _mapping_rejections(self, data: pd.DataFrame, position: pd.DataFrame, errors: list[list[dict]],
                            failed: np.ndarray) -> pd.DataFrame:
        rows = []
        at = np.flatnonzero(failed)
        text = {c: column_text(data[c].iloc[at]) for c in data.columns}  # as the mapping read them
        for k, i in enumerate(at.tolist()):
            claim_id = self.shapes.claim_id({c: cells[k] for c, cells in text.items()})
            rows += [(position[SOURCE].iat[i], position[ROW].iat[i], claim_id, e["field"], e["value"], e["reason"])
                     for e in errors[i]]
        return pd.DataFrame(rows, columns=list(REJECTED_COLUMNS))


def duplicated_keys(keys: pd.DataFrame) -> pd.DataFrame:
    """The keys whose typed claim id is on more than one row (every one of them, as validation flags them)."""
    ids = keys["claim_id"]
    return keys.loc[ids.notna() & ids.duplicated(keep=False)]


def rejected_frame(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Rejected rows' problems in one frame: text columns (None where empty), `row` a nullable integer."""
    parts = [p for p in parts if len(p)]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({c: [] for c in REJECTED_COLUMNS})
    frame = frame.astype({c: object for c in REJECTED_COLUMNS})
    frame["row"] = pd.array(frame["row"].to_numpy(dtype=object), dtype="Int64")
    return frame


class BulkScorer:
    """Validated claims with their history features counted, to one output row per claim."""

    def __init__(self, bundle: TriageBundle, model_version: str, explain: bool):
        self.bundle = bundle
        self.model_version = str(model_version)
        self.explainer = Explainer(bundle) if explain else None
        self.columns = output_columns(explain)

    def score(self, claims: pd.DataFrame, history: dict[str, np.ndarray]) -> pd.DataFrame:
        n = len(claims)
        matrix = self.bundle.builder.transform(claims, history_values=history)
        scores = self.bundle.model_scores(claims, matrix)
        decisions = self.bundle.policy.decide(scores.fraud, scores.anomaly, scores.approval, scores.blocked)
        out = {
            "claim_id": claims["claim_id"].astype("str").to_numpy(dtype=object),
            "decision": np.asarray(decisions, dtype=object),
            "approval_probability": scores.approval if scores.approval is not None else np.full(n, np.nan),
            "fraud_probability": scores.fraud,
            "anomaly_score": scores.anomaly,
            "rule_hits": np.array([",".join(r) for r in scores.rules], dtype=object),
            "model_version": np.full(n, self.model_version, dtype=object),
        }
        if self.explainer is not None:
            reasons = self.explainer.reasons(matrix, TOP_REASONS) if n else []
            for model, column in zip(MODELS, REASON_COLUMNS):
                out[column] = np.array([json.dumps([r.as_dict() for r in per_model[model]]) if model in per_model
                                        else None for per_model in reasons], dtype=object)
        return pd.DataFrame(out, columns=list(self.columns))
