"""Scoring claims online: validate, history from the store, features, scores, decision, reasons, persist.

Plain Python with no web framework in it, so the HTTP service, the benchmark and the tests all
drive the same path. Nothing is acknowledged before it is committed to the store.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from features.graph import GRAPH_FEATURES, GraphSettings
from features.record_validation import duplicate_errors, validate_record
from features.schema import FIELD_NAMES
from models.bundle import TriageBundle
from models.config import Deadlines, SecurityConfig, ServingConfig
from models.explain import Explainer
from models.policy import AUTO_APPROVE, RULE_TEXT, record_rule_hits
from serving.clock import utc_now
from serving.shapes import EXTRACT, RecordShapes
from serving.store import ClaimStore

TOP_REASONS = 5
# Below this many claims, the features are made claim by claim in plain Python (`transform_record`):
# faster than the vectorised path's fixed cost of about a millisecond (measured: 0.5 against 1.0 ms
# for 32 claims, about even at 64). Both give the same numbers, bit for bit.
RECORD_ROWS_BELOW = 48
log = logging.getLogger("claimtriage.serving")


@dataclass
class ScoredBatch:
    """Per input claim, in order: a response dict, or an error dict naming each bad field."""

    results: list[dict]

    @property
    def n_errors(self) -> int:
        return sum("errors" in r for r in self.results)


class Scorer:
    """One model version, its explainer and the claim store, ready to score."""

    def __init__(self, bundle: TriageBundle, model_version: str, store: ClaimStore, deadlines: Deadlines,
                 max_batch: int = ServingConfig.max_batch_claims, max_group: int = ServingConfig.max_group_claims,
                 shap_engine: str = ServingConfig.shap_engine,
                 max_errors_listed: int = SecurityConfig.max_errors_listed):
        self.bundle = bundle
        self.model_version = str(model_version)
        self.store = store
        self.deadlines = deadlines
        self.explainer = Explainer(bundle, shap_engine)
        self.max_batch = max_batch
        self.max_group = max_group  # single claims scored together at most (see `serving.grouping`)
        self.max_errors_listed = max_errors_listed  # per claim in an answer (config.security)
        self.record_rows_below = RECORD_ROWS_BELOW
        self.allowed_fields = {f.name for f in bundle.claim_fields} | set(FIELD_NAMES)
        self.shapes = RecordShapes(getattr(bundle, "mapping", None), bundle.claim_fields)
        self.history_features = history_feature_names(bundle)
        self.graph = bundle.builder.graph_settings  # how the claim graph links claims, as trained
        self._shadow_graph: tuple[GraphSettings, list[str]] | None = None
        self.shadow = None  # a `serving.shadow.Shadow` where a challenger scores in the champion's shadow
        self.on_decided: Callable[[list[dict]], None] | None = None  # told each committed answer (live metrics)

    def add_shadow(self, shadow) -> None:
        """Give every committed decision to `shadow` too; the history counted for the champion then
        holds the challenger's history features as well, from the same transaction."""
        self.shadow = shadow
        theirs = shadow.challenger.bundle.builder.graph_settings
        linked = [name for name in shadow.history_features if name in GRAPH_FEATURES]
        if theirs != self.graph and linked:  # its graph links claims otherwise: counted apart
            self._shadow_graph = (theirs, linked)
        shared = [name for name in shadow.history_features if self._shadow_graph is None or name not in linked]
        self.history_features = sorted(set(self.history_features) | set(shared))

    def score(self, records: list[dict], explain: bool = True, now: datetime | None = None) -> ScoredBatch:
        """Score claims given as JSON-like dicts; invalid ones get an error entry, the others a decision."""
        return self._score_many(records, explain, now or utc_now())

    def _score_many(self, records: list[dict], explain: bool, now: datetime) -> ScoredBatch:
        """Any number of claims: each validated on its own, then history, features, scores and
        reasons for all valid ones at once, in one transaction of the claim store."""
        results, valid, positions, notes = self._validated(records, now, repeats_are_errors=True)
        if valid:
            for position, response in zip(positions, self._decide(valid, explain, now, notes)):
                results[position] = response
        return ScoredBatch(self._all_answered(results))

    def score_each(self, records: list[dict], now: datetime | None = None) -> list[dict]:
        """Claims sent one by one (each in its own request) that arrived together (see
        `serving.grouping`): answered in order, in one transaction, as a batch of them would be (a
        claim counts those of the others reported before it, as the offline pipeline does). Unlike
        in a batch, a claim_id may come twice (a client retrying): the later copy is then scored
        after the earlier one is kept, in a transaction of its own, with the claims after it."""
        now = now or utc_now()
        results, valid, positions, notes = self._validated(records, now, repeats_are_errors=False)
        # A claim_id seen again starts a new transaction: the later copy replaces the earlier one.
        segments, seen = [[]], set()
        for j, claim in enumerate(valid):
            if claim["claim_id"] in seen:
                segments.append([])
                seen = set()
            seen.add(claim["claim_id"])
            segments[-1].append(j)
        for members in segments:
            if members:
                chosen = [valid[j] for j in members]
                for j, response in zip(members, self._decide(chosen, True, now, [notes[j] for j in members])):
                    results[positions[j]] = response
        return self._all_answered(results)

    def _validated(self, records: list[dict], now: datetime,
                   repeats_are_errors: bool) -> tuple[list[dict | None], list[dict], list[int], list[list[str]]]:
        """Each record checked on its own: (an error entry or None per record, the valid claims,
        their positions, what the mapping changed on purpose in each valid claim). In a batch
        (`repeats_are_errors`), a claim_id sent twice is an error."""
        fields = self.bundle.claim_fields
        canonical, mapped, changed = self._canonical(records)
        checked = [validate_record(record, fields, as_of=now) for record in canonical]
        repeated = duplicate_errors([claim for claim, _ in checked], canonical) if repeats_are_errors else {}
        results: list[dict | None] = [None] * len(records)
        valid, positions = [], []
        for i, (record, (claim, errors)) in enumerate(zip(records, checked)):
            if i in repeated:
                errors.append(repeated[i])
            if i in mapped:  # the extract's own record: named by the columns the claims system sent
                reported = {e["field"] for e in mapped[i]}
                errors = mapped[i] + self.shapes.source_errors(errors, record, reported)
            else:
                errors += self._unknown_fields(record)
            if errors:
                claim_id = self.shapes.claim_id(record) if i in mapped else record.get("claim_id")
                results[i] = {"claim_id": _text(claim_id), "errors": _listed(errors, self.max_errors_listed)}
            else:
                valid.append(claim)
                positions.append(i)
        return results, valid, positions, [changed.get(i, []) for i in positions]

    @staticmethod
    def _all_answered(results: list[dict | None]) -> list[dict]:
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:  # every claim gets an answer; anything else is a bug, never a silent drop
            raise RuntimeError(f"claims at positions {missing} got neither a decision nor an error")
        return results

    def _decide(self, claims: list[dict], explain: bool, now: datetime,
                notes: list[list[str]] | None = None) -> list[dict]:
        """Validated claims, in one transaction of the claim store: stored, their history counted,
        scored, explained and decided, the decisions recorded. A few claims (one, or a group of
        single claims) get their features claim by claim, without pandas. `notes`, per claim: what
        its mapping changed on purpose, said in its answer."""
        cap = self.bundle.targets.auto_approve_amount_cap
        with self.store.intake() as intake:
            intake.put(claims)
            history = intake.history(claims, self.history_features, self.graph)
            shadow_history = history
            if self._shadow_graph is not None:
                settings, linked = self._shadow_graph
                shadow_history = {**history, **intake.history(claims, linked, settings)}
            matrix = feature_matrix(self.bundle.builder, claims, history, self.record_rows_below)
            rules = [record_rule_hits(claim, cap) for claim in claims]
            responses = self._responses([claim["claim_id"] for claim in claims], matrix, rules, explain, now)
            for response, changed in zip(responses, notes or ()):
                if changed:  # kept with the decision: nothing the mapping changed goes unsaid
                    response["mapping_notes"] = changed
            decision_ids = intake.decide(claims, responses, self.model_version)
        self._committed(claims, shadow_history, decision_ids, responses)
        return responses

    def _committed(self, claims: list[dict], history: dict[str, np.ndarray], decision_ids: list[int],
                   responses: list[dict]) -> None:
        """Committed decisions, told to the shadow challenger and the live metrics (a rolled-back claim
        never was). Neither may fail the answer: the decisions are kept, and a caller told of a failure
        would send the claims again, to be decided twice."""
        try:
            if self.shadow is not None:
                self.shadow.submit(claims, history, decision_ids, [r["decision"] for r in responses])
            if self.on_decided is not None:
                self.on_decided(responses)
        except Exception:  # noqa: BLE001 - logged; the answer stands
            log.exception("after %d committed decisions, the shadow challenger or the metrics failed", len(claims))

    def _canonical(self, records: list[dict]) -> tuple[list[dict], dict[int, list[dict]], dict[int, list[str]]]:
        """Every record in the canonical shape (of a record sent in the extract's shape, what mapped);
        for each record sent in the extract's shape, the mapping's errors (empty when it mapped); and
        for those the mapping changed on purpose, its notes."""
        if self.shapes.mapping is None:
            return records, {}, {}
        positions = [i for i, record in enumerate(records) if self.shapes.shape_of(record) == EXTRACT]
        if not positions:
            return records, {}, {}
        canonical, mapped, changed = list(records), {}, {}
        for i, (claim, errors, notes) in zip(positions, self.shapes.to_canonical([records[i] for i in positions])):
            canonical[i], mapped[i] = claim, errors
            if notes:
                changed[i] = notes
        return canonical, mapped, changed

    def _unknown_fields(self, record: dict) -> list[dict]:
        return [{"field": name, "value": None, "reason": "is not a field of the claim record"}
                for name in sorted(set(record) - self.allowed_fields)]

    def _responses(self, claim_ids: list[str], matrix: np.ndarray, rules: list[list[str]], explain: bool,
                   now: datetime) -> list[dict]:
        scores = self.bundle.scores_with_rules(matrix, rules)
        decisions = self.bundle.policy.decide(scores.fraud, scores.anomaly, scores.approval, scores.blocked)
        reasons, totals = [None] * len(claim_ids), [None] * len(claim_ids)
        if explain:
            contributions = self.explainer.contributions(matrix)
            reasons = self.explainer.reasons(matrix, TOP_REASONS, contributions)
            totals = _totals(contributions)
        respond_by = _iso(now + timedelta(hours=self.deadlines.respond_hours))
        resolve_by = _iso(now + timedelta(hours=self.deadlines.resolve_hours))
        scored_at = _iso(now)
        out = []
        for i, claim_id in enumerate(claim_ids):
            decision = str(decisions[i])
            response = {
                "claim_id": claim_id,
                "model_version": self.model_version,
                "decision": decision,
                "scores": {
                    "approval_probability": None if scores.approval is None else float(scores.approval[i]),
                    "fraud_probability": float(scores.fraud[i]),
                    "anomaly_score": float(scores.anomaly[i]),
                },
                "rule_hits": [{"rule": r, "text": RULE_TEXT[r]} for r in scores.rules[i]],
                "deadlines": None if decision == AUTO_APPROVE else {"respond_by": respond_by, "resolve_by": resolve_by},
                "scored_at": scored_at,
            }
            response["reasons"] = None if reasons[i] is None else {
                model: [r.as_dict() for r in rs] for model, rs in reasons[i].items()}
            response["contribution_totals"] = totals[i]
            response["mapping_notes"] = None
            out.append(response)
        return out


def history_feature_names(bundle: TriageBundle) -> list[str]:
    """The history features a bundle's model reads (counted from the claim store when scoring)."""
    return [spec.name for spec in bundle.builder.specs_ if spec.source == "history"]


def feature_matrix(builder, claims: list[dict], history: dict[str, np.ndarray], record_rows_below: int) -> np.ndarray:
    """The model matrix of validated claims with their history counted: claim by claim in plain Python
    below `record_rows_below` claims, vectorised above (the same numbers, bit for bit)."""
    if len(claims) < record_rows_below:
        return np.vstack([builder.transform_record(claim, {name: values[i] for name, values in history.items()})
                          for i, claim in enumerate(claims)])
    return builder.transform_records(claims, history)


def _listed(errors: list[dict], most: int) -> list[dict]:
    """A claim's errors, at most `most` of them, then one entry saying how many more there were: a
    claim of 500 made-up fields is answered in a few lines, not 500."""
    if len(errors) <= most:
        return errors
    left_out = len(errors) - most
    return errors[:most] + [{"field": "...", "value": None,
                             "reason": f"{left_out:,} more error{'s' if left_out > 1 else ''} left out: a claim's "
                                       f"answer lists at most {most:,}"}]


def _totals(contributions: dict) -> list[dict]:
    """Per claim and model: where the explanation starts (the base value) and ends (the model's raw
    output, base plus every contribution), so a reader can see what the top reasons leave out."""
    per_model = {model: (base.tolist(), (base + values.sum(axis=1)).tolist())
                 for model, (base, values) in contributions.items()}
    n = len(next(iter(per_model.values()))[0])
    return [{model: {"base_value": round(b[i], 6), "model_output": round(o[i], 6)}
             for model, (b, o) in per_model.items()} for i in range(n)]


def _iso(moment: datetime) -> str:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000).isoformat(timespec="milliseconds") + "Z"


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)[:128]
