"""Validation reports every bad cell by claim, column, value and reason; valid rows pass untouched."""

import json

import numpy as np
import pandas as pd
import pytest

from features.schema import CLAIM_FIELDS, REQUIRED_FIELDS
from features.validation import ClaimValidationError, validate_claims


def claim(**overrides) -> dict:
    base = {
        "claim_id": "C1", "policy_id": "P1", "claimant_id": "K1", "line_of_business": "auto",
        "loss_type": "collision", "policy_start_date": "2024-01-01", "loss_date": "2024-03-01",
        "report_date": "2024-03-02T09:30:00Z", "claim_amount": 2500.0, "coverage_limit": 50000.0,
        "loss_hour": 14, "police_report": True, "witnesses": 1, "payee_account": "acct-1",
    }
    base.update(overrides)
    return base


def errors_of(rows: list[dict]) -> list[tuple]:
    report = validate_claims(pd.DataFrame(rows))
    return [(e["claim_id"], e["column"], e["reason"]) for e in report.to_records()]


def test_a_valid_claim_comes_back_typed_and_unchanged():
    report = validate_claims(pd.DataFrame([claim()]))
    assert report.ok and report.n_invalid == 0
    row = report.claims.iloc[0]
    assert row["report_date"] == pd.Timestamp("2024-03-02 09:30:00")
    assert row["loss_date"] == pd.Timestamp("2024-03-01")
    assert row["claim_amount"] == 2500.0 and row["loss_hour"] == 14 and bool(row["police_report"]) is True
    assert pd.api.types.is_datetime64_any_dtype(report.claims["policy_start_date"])


def test_report_before_loss_is_invalid_and_names_the_loss_date():
    found = errors_of([claim(report_date="2024-02-27T10:00:00Z")])
    assert found == [("C1", "report_date", "is before loss_date 2024-03-01")]


def test_loss_before_policy_start_is_valid_data():
    report = validate_claims(pd.DataFrame([claim(loss_date="2023-12-20", report_date="2023-12-21T00:00:00Z")]))
    assert report.ok


@pytest.mark.parametrize("field, value, reason", [
    ("claim_amount", -5, "must be greater than 0"),
    ("claim_amount", 0, "must be greater than 0"),
    ("claim_amount", "a lot", "must be a number"),
    ("claim_amount", True, "must be a number"),
    ("claim_amount", float("inf"), "must be a finite number"),
    ("loss_hour", 24, "must be at most 23"),
    ("loss_hour", 2.5, "must be a whole number"),
    ("witnesses", -1, "must be at least 0"),
    ("line_of_business", "marine", "must be one of auto, property"),
    ("loss_date", "3000-01-01", "is outside 1900-01-01 to 2100-12-31"),
    ("loss_date", "01/03/2024", "must be a date (YYYY-MM-DD) without a time of day"),
    ("policy_start_date", "2024-01-01T12:00:00", "must be a date (YYYY-MM-DD) without a time of day"),
    ("report_date", "yesterday", "must be an ISO 8601 date-time, e.g. 2025-03-01T14:30:00Z"),
    ("police_report", "maybe", "must be true or false"),
    ("claim_id", "", "is empty"),
    ("claim_id", "C\x001", "contains a control character (U+0000)"),
    ("claim_id", "C1\u202egpj.exe", "contains a format character (U+202E)"),
    ("claim_id", "C\u200d1", "contains a format character (U+200D)"),
    ("claim_id", "C1\u2028", "contains a line separator (U+2028)"),
    ("claim_id", "   ", "is only spaces"),
    ("claim_id", " C1", "starts or ends with a space"),
    ("claim_id", "C1\u3000", "starts or ends with a space"),
    ("payee_account", "x" * 10_000_000, "is longer than 128 characters"),
    ("policy_id", None, "is required but missing"),
])
def test_each_bad_value_is_named_with_its_reason(field, value, reason):
    rows = [claim(claim_id="GOOD"), {**claim(claim_id="BAD"), field: value}]
    report = validate_claims(pd.DataFrame(rows))
    assert report.valid_mask.tolist() == [True, False]
    bad = report.to_records()
    assert [(e["row"], e["column"], e["reason"]) for e in bad] == [(1, field, reason)]
    assert len(bad[0]["value"] or "") <= 120  # a 10 MB value is quoted, not echoed whole


def test_claim_ids_with_slashes_query_marks_and_letters_beyond_ascii_are_valid():
    ids = ["2025/000777", "a?b#c%d e", "\u00c4rzte-\u00fc", "x" * 128, "C\u00a0no-break space inside"]
    report = validate_claims(pd.DataFrame([claim(claim_id=i) for i in ids]))
    assert report.ok, report.to_records()
    assert report.claims["claim_id"].tolist() == ids


def test_every_error_in_a_frame_is_reported_not_just_the_first():
    rows = [claim(claim_id="A", claim_amount=-1, loss_hour=30), claim(claim_id="B"), claim(claim_id="C", region=7)]
    found = errors_of(rows)
    assert ("A", "claim_amount", "must be greater than 0") in found
    assert ("A", "loss_hour", "must be at most 23") in found
    assert ("C", "region", "must be text") in found
    assert not [e for e in found if e[0] == "B"]


def test_missing_required_column_invalidates_every_row():
    frame = pd.DataFrame([claim(), claim(claim_id="C2")]).drop(columns="loss_type")
    report = validate_claims(frame)
    assert report.n_invalid == 2
    assert set(report.errors["column"]) == {"loss_type"}


def test_duplicate_claim_ids_in_one_batch_are_both_reported():
    found = errors_of([claim(), claim()])
    assert found == [("C1", "claim_id", "appears more than once in this batch")] * 2


def test_future_dates_are_rejected_only_when_a_clock_is_given():
    rows = pd.DataFrame([claim(loss_date="2030-01-01", report_date="2030-01-02T00:00:00Z")])
    assert validate_claims(rows).ok
    report = validate_claims(rows, as_of=pd.Timestamp("2026-11-24"))
    assert set(report.errors["column"]) == {"loss_date", "report_date"}


def test_labels_are_required_only_for_training():
    rows = pd.DataFrame([claim()])
    assert validate_claims(rows).ok
    report = validate_claims(rows, require_labels=True)
    assert sorted(report.errors["column"]) == ["is_fraud", "paid_as_filed"]


def test_report_is_readable_and_machine_readable():
    report = validate_claims(pd.DataFrame([claim(claim_id="X", claim_amount=-1), claim(claim_id="Y")]))
    text = report.summary()
    assert "2 claims: 1 invalid, 1 valid." in text and "claim_amount" in text and "X" in text
    payload = json.loads(report.to_json())
    assert payload["n_invalid"] == 1 and payload["errors"][0]["claim_id"] == "X"
    with pytest.raises(ClaimValidationError, match="claim_amount"):
        report.raise_if_invalid()


def test_extra_columns_pass_through_and_index_is_kept():
    frame = pd.DataFrame([claim(claim_id="A"), claim(claim_id="B", claim_amount=-1)], index=[10, 20])
    frame["adjuster_note"] = ["n1", "n2"]
    report = validate_claims(frame)
    assert report.claims.index.tolist() == [10]
    assert report.claims["adjuster_note"].tolist() == ["n1"]


def test_generated_claims_are_valid(generated_claims):
    report = validate_claims(generated_claims, require_labels=True)
    assert report.ok, report.summary()
    assert len(report.claims) == len(generated_claims)


def test_schema_declares_the_required_fields_of_the_claim_record():
    assert set(REQUIRED_FIELDS) == {"claim_id", "policy_id", "claimant_id", "line_of_business", "loss_type",
                                    "policy_start_date", "loss_date", "report_date", "claim_amount"}
    assert len({f.name for f in CLAIM_FIELDS}) == len(CLAIM_FIELDS) == 25
    assert np.all([f.description for f in CLAIM_FIELDS])
