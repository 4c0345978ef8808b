"""The canonical claim record: every field, its type, range and rules, declared once.

Training, the synthetic generator, dataset mappings and the scoring service all read this
declaration; nothing else in the project lists the claim fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldKind = Literal["string", "date", "datetime", "number", "integer", "boolean"]

# Dates outside this window are typing mistakes (the year 3000, the year 20), not claims.
EARLIEST_DATE = "1900-01-01"
LATEST_DATE = "2100-12-31"
# Identifiers are hashes or short codes; anything longer is a mistake or an attack.
MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 64
# A single claim above this is not a claim a triage model should see unchallenged.
MAX_CLAIM_AMOUNT = 1e9


@dataclass(frozen=True)
class ClaimField:
    """One field of the canonical claim record."""

    name: str
    kind: FieldKind
    required: bool
    description: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] | None = None
    max_length: int | None = None


CLAIM_FIELDS: tuple[ClaimField, ...] = (
    ClaimField("claim_id", "string", True, "Unique claim identifier.", max_length=MAX_ID_LENGTH),
    ClaimField("policy_id", "string", True, "Policy identifier.", max_length=MAX_ID_LENGTH),
    ClaimField("claimant_id", "string", True, "Pseudonymised claimant identifier.", max_length=MAX_ID_LENGTH),
    ClaimField("line_of_business", "string", True, "Line of business.", choices=("auto", "property")),
    ClaimField("loss_type", "string", True, "Kind of loss, e.g. collision, theft, glass, injury, water, fire, storm.",
               max_length=MAX_TEXT_LENGTH),
    ClaimField("policy_start_date", "date", True, "Date the policy incepted."),
    ClaimField("loss_date", "date", True, "Date the loss happened."),
    ClaimField("report_date", "datetime", True, "When the loss was reported (UTC); not before loss_date."),
    ClaimField("claim_amount", "number", True, "Amount claimed.", minimum=0, exclusive_minimum=True,
               maximum=MAX_CLAIM_AMOUNT),
    ClaimField("coverage_limit", "number", False, "Policy limit for this cover.", minimum=0, maximum=1e10),
    ClaimField("deductible", "number", False, "Deductible (excess).", minimum=0, maximum=1e8),
    ClaimField("annual_premium", "number", False, "Annual premium of the policy.", minimum=0, maximum=1e8),
    ClaimField("loss_hour", "integer", False, "Hour of day of the loss, 0-23.", minimum=0, maximum=23),
    ClaimField("police_report", "boolean", False, "A police report was filed."),
    ClaimField("attorney_involved", "boolean", False, "An attorney represents the claimant."),
    ClaimField("witnesses", "integer", False, "Number of witnesses.", minimum=0, maximum=1000),
    ClaimField("injuries", "integer", False, "Number of people injured.", minimum=0, maximum=1000),
    ClaimField("vehicles_involved", "integer", False, "Number of vehicles involved.", minimum=0, maximum=1000),
    ClaimField("region", "string", False, "Region of the loss.", max_length=MAX_TEXT_LENGTH),
    ClaimField("payee_account", "string", False, "Hashed payee bank account.", max_length=MAX_ID_LENGTH),
    ClaimField("claimant_phone", "string", False, "Hashed claimant phone number.", max_length=MAX_ID_LENGTH),
    ClaimField("claimant_address", "string", False, "Hashed claimant address.", max_length=MAX_ID_LENGTH),
    ClaimField("provider_id", "string", False, "Repair shop, contractor or medical provider.", max_length=MAX_ID_LENGTH),
    ClaimField("claimant_age", "integer", False, "Claimant's age in years.", minimum=14, maximum=120),
    ClaimField("customer_since", "date", False, "Date the claimant became a customer."),
)

FIELDS_BY_NAME: dict[str, ClaimField] = {f.name: f for f in CLAIM_FIELDS}
REQUIRED_FIELDS: tuple[str, ...] = tuple(f.name for f in CLAIM_FIELDS if f.required)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in CLAIM_FIELDS)

# Outcome labels, known only for closed claims; never inputs to a model.
LABEL_FIELDS: tuple[str, ...] = ("is_fraud", "paid_as_filed")
# When an investigation confirmed a claim's fraud: an outcome known after the claim, never a model
# input; the claim graph counts a ring's confirmed fraud only from then on (features/graph.py).
OUTCOME_TIME_FIELD = ClaimField("fraud_confirmed_at", "datetime", False,
                                "When an investigation confirmed the claim's fraud (an outcome, not an input).")
# What the synthetic generator drew the labels from, for oracle metrics.
GROUND_TRUTH_FIELDS: tuple[str, ...] = ("true_fraud_prob", "true_paid_as_filed_prob", "is_injected_anomaly", "ring_id")

# The entities whose shared use across claimants signals organised fraud.
ENTITY_FIELDS: tuple[str, ...] = ("claimant_id", "policy_id", "payee_account", "claimant_phone",
                                  "claimant_address", "provider_id")
