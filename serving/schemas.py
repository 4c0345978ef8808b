"""The HTTP contract: request and response bodies, generated from the canonical claim record.

The request model checks JSON types only (text, number, true/false); ranges, dates and the
rules across fields are checked by the claim validation the rest of the project uses, so a
claim means the same thing at the door as in training.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, create_model

from features.record_spec import claim_id_problem
from features.schema import CLAIM_FIELDS

# Any JSON scalar at the door: a version trained through a mapping also takes the extract's own
# record, whose columns may share a canonical field's name with another type ("witnesses": "2").
# What each field must be is checked by the claim validation, which answers 422 naming the field.
JsonScalar = Union[StrictStr, StrictBool, StrictInt, StrictFloat]
_KINDS = {"string": "text", "date": "a date, YYYY-MM-DD", "datetime": "an ISO 8601 date-time",
          "boolean": "true or false", "number": "a number", "integer": "a whole number"}
EXAMPLE_CLAIM = {
    "claim_id": "C-2025-000123", "policy_id": "P8c1f0e2a9b7d", "claimant_id": "CL3f9a0c1d22e4",
    "line_of_business": "auto", "loss_type": "collision", "policy_start_date": "2024-02-01",
    "loss_date": "2025-03-01", "report_date": "2025-03-02T09:30:00Z", "claim_amount": 4200.0,
    "coverage_limit": 50000.0, "deductible": 500.0, "annual_premium": 1150.0, "loss_hour": 17,
    "police_report": True, "attorney_involved": False, "witnesses": 1, "injuries": 0, "vehicles_involved": 2,
    "region": "north", "payee_account": "AC5e0b9d11aa02", "claimant_phone": "PH77c2e0f1b3a9",
    "claimant_address": "AD0f9e8d7c6b5a", "provider_id": "PR12ab34cd56ef", "claimant_age": 44,
    "customer_since": "2019-06-15",
}


def _field(spec):
    note = "" if spec.required else " Optional."
    return (Optional[JsonScalar], Field(default=None, description=f"{spec.description} {_KINDS[spec.kind][:1].upper()}"
                                                                 f"{_KINDS[spec.kind][1:]}.{note}"))


# Every field may be absent at the type level: a missing required field is reported by the
# claim validation (422, with the others), not as a bare type error.
Claim = create_model(
    "Claim",
    __config__=ConfigDict(extra="allow", json_schema_extra={"example": EXAMPLE_CLAIM}),
    **{spec.name: _field(spec) for spec in CLAIM_FIELDS},
)
Claim.__doc__ = "One claim (first notice of loss) in the canonical record; extra features of a model trained " \
                "through a dataset mapping are passed as further fields. A version trained through a mapping " \
                "also takes a record in the extract's own columns and codes (GET /model shows both shapes)."


class Scores(BaseModel):
    approval_probability: Optional[float] = Field(
        description="Calibrated probability the claim is payable as filed (no adjustment, dispute or fraud); "
                    "null for a model trained without that label.")
    fraud_probability: float = Field(description="Calibrated probability investigation would confirm fraud.")
    anomaly_score: float = Field(description="Share of training claims less unusual than this one (0-1).")


class Reason(BaseModel):
    feature: str
    value: Union[float, str, None]
    contribution: float = Field(description="Signed SHAP contribution; positive pushes towards approval, "
                                            "fraud or anomaly respectively.")
    text: str = Field(description="The reason in words an adjuster understands.")


class RuleHit(BaseModel):
    rule: str
    text: str


class Deadlines(BaseModel):
    respond_by: str
    resolve_by: str


class ModelTotal(BaseModel):
    base_value: float = Field(description="The model's expected raw output over the training claims.")
    model_output: float = Field(description="This claim's raw output: base value plus every contribution "
                                            "(log-odds for fraud and eligibility; for anomaly the summed improbability of "
                                            "its features, or an isolation forest's mean path length).")


class Decision(BaseModel):
    claim_id: str
    model_version: str
    decision: Literal["AUTO_APPROVE", "STANDARD_REVIEW", "ENHANCED_REVIEW", "SIU_REFERRAL"]
    scores: Scores
    reasons: Optional[dict[str, list[Reason]]] = Field(
        default=None, description="Per model (eligibility, fraud, anomaly), the strongest contributions.")
    contribution_totals: Optional[dict[str, ModelTotal]] = Field(
        default=None, description="Per model, where its explanation starts and ends (for waterfall charts).")
    rule_hits: list[RuleHit]
    deadlines: Optional[Deadlines] = Field(description="For every outcome that needs a person; null when approved.")
    scored_at: str
    mapping_notes: Optional[list[str]] = Field(
        default=None, description="For a record in the extract's shape: what its mapping changed on purpose "
                                  "(an out-of-range value of an optional field set missing).")


class FieldError(BaseModel):
    field: str = Field(description="The field, or for a record in the extract's shape the extract's column(s).")
    value: Optional[str]
    reason: str


class ClaimError(BaseModel):
    claim_id: Optional[str]
    errors: list[FieldError]


class BatchResult(BaseModel):
    results: list[Union[Decision, ClaimError]] = Field(
        description="One entry per claim, in order: a decision, or the claim's field errors.")
    n_scored: int
    n_errors: int


class Feedback(BaseModel):
    """What a claim came to, from the claims system or an adjuster: it resolves the claim's case and
    becomes its training label."""

    claim_id: StrictStr = Field(max_length=128)
    outcome: Literal["paid_as_filed", "paid_adjusted", "denied", "confirmed_fraud", "not_fraud"]
    note: Optional[StrictStr] = Field(default=None, max_length=4000)
    recorded_by: Optional[StrictStr] = Field(
        default=None, min_length=1, max_length=128,
        description="This API key's name, or left out (the same): outcomes are recorded under the identity "
                    "that sent them.")

    def problems(self, key_name: str) -> list[dict]:
        """What stops this outcome being recorded for a request made with the API key `key_name`
        (none if nothing does): a claim id no claim can have (features.record_spec), or a
        `recorded_by` naming someone else than the key: a caller may not record in another's name."""
        errors = []
        problem = claim_id_problem(self.claim_id)
        if problem:
            errors.append({"field": "claim_id", "value": self.claim_id, "reason": problem})
        if self.recorded_by is not None and self.recorded_by != key_name:
            errors.append({"field": "recorded_by", "value": self.recorded_by,
                           "reason": f"must be this API key's name ({key_name!r}) or left out: outcomes are "
                                     "recorded under the identity that sent them"})
        return errors


class Responder(BaseModel):
    by: StrictStr = Field(min_length=1, max_length=128,
                          description="The adjuster who takes the case (the ledger records which API key said so).")
