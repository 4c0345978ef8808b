"""validate_record gives, for one claim, exactly what validate_claims gives for it as a one-row frame.

The frame validator is the definition. Every claim below goes through both, and the two must agree
on the errors (order and text included), on the typed values of a valid claim (type and value),
and on raising where the frame validator raises. The last section changes the record specification
both derive their rules and reasons from (features/record_spec.py) and finds the change in both.
"""

from __future__ import annotations

import inspect
import math
import operator
import random
import re
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from features import record_spec, schema
from features.record_validation import duplicate_errors, typed_frame, validate_record
from features.schema import CLAIM_FIELDS, FIELDS_BY_NAME, REQUIRED_FIELDS, ClaimField
from features.validation import validate_claims
from tests.features.test_validation import claim as _claim
from training.generate import generate_claims

AS_OF = datetime(2025, 1, 15, 12, 0)  # inside the generated claims' span: later claims are in the future
LATE_AS_OF = datetime(2031, 1, 1)  # after every generated claim
EXTRA = ClaimField("extra_x", "number", False, "x")
WITH_EXTRA = CLAIM_FIELDS + (EXTRA,)
REQUIRED_ONLY = tuple(f for f in CLAIM_FIELDS if f.required)
WITHOUT_LOSS_DATE = tuple(f for f in CLAIM_FIELDS if f.name != "loss_date")


# --- the two sides ------------------------------------------------------------------------------

def _typed_rows(report, fields) -> dict[int, dict]:
    """The typed valid rows as plain Python: Timestamp -> datetime, numpy scalar -> item, missing left out."""
    names = [spec.name for spec in fields if spec.name in report.claims.columns]
    rows = report.claims[names].astype(object).to_dict(orient="index")
    return {position: {name: _plain(value) for name, value in row.items() if not _missing(value)}
            for position, row in rows.items()}


def _missing(value) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _plain(value):
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if isinstance(value, np.generic) else value


def _error_dicts(errors: pd.DataFrame) -> dict[int, list[dict]]:
    found: dict[int, list[dict]] = {}
    for e in errors.itertuples(index=False):
        found.setdefault(int(e.row), []).append({"field": e.column, "value": e.value, "reason": e.reason})
    return found


def frame_outcome(record: dict, fields=CLAIM_FIELDS, as_of=None):
    """validate_claims on the record as a one-row frame: (typed, errors), or (exception type, message)."""
    try:
        frame = pd.DataFrame([record], index=pd.RangeIndex(1))
        report = validate_claims(frame, fields=fields, as_of=None if as_of is None else pd.Timestamp(as_of))
    except Exception as exc:  # the record validator must raise the same
        return type(exc), str(exc)
    errors = _error_dicts(report.errors).get(0, [])
    return (_typed_rows(report, fields)[0] if not errors else None), errors


def batch_outcomes(records: list[dict], fields=CLAIM_FIELDS, as_of=None) -> list[tuple]:
    """validate_claims on many records at once, per record: (typed, errors).

    Equal to one-row frames only while every column holds one JSON type across the records (the
    batch then types each column as each one-row frame does); checked here, and the result is held
    against true one-row frames on a sample in `test_batched_reference_equals_one_row_frames`.
    """
    for name in {k for r in records for k in r}:
        kinds = {type(r[name]) for r in records if r.get(name) is not None}
        assert len(kinds) <= 1, f"column {name} mixes {kinds}: a batch would not type it as one row does"
    ids = [r.get("claim_id") for r in records]
    assert len(set(ids)) == len(ids), "duplicate claim_ids would add batch-only errors"
    frame = pd.DataFrame(records, index=pd.RangeIndex(len(records)))
    report = validate_claims(frame, fields=fields, as_of=None if as_of is None else pd.Timestamp(as_of))
    errors, typed = _error_dicts(report.errors), _typed_rows(report, fields)
    return [((typed[i] if i not in errors else None), errors.get(i, [])) for i in range(len(records))]


def record_outcome(record: dict, fields=CLAIM_FIELDS, as_of=None):
    try:
        typed, errors = validate_record(record, fields, as_of)
    except Exception as exc:
        return type(exc), str(exc)
    return (typed if not errors else None), errors


def _exact(typed):
    """Typed values with their types, so 1 == 1.0 == True and 0.0 == -0.0 do not pass for each other."""
    if not isinstance(typed, dict):
        return typed
    return {k: (type(v).__name__, repr(v)) for k, v in typed.items()}


def assert_same(expected, got, record, label=""):
    assert type(expected[0]) is type(got[0]) and _exact(expected[0]) == _exact(got[0]), \
        f"{label} typed/raised differ for {_short(record)}:\n frame  {expected}\n record {got}"
    assert expected[1] == got[1], f"{label} errors differ for {_short(record)}:\n frame  {expected[1]}\n record {got[1]}"


def _short(record: dict) -> str:
    return repr({k: (v[:40] + "...") if isinstance(v, str) and len(v) > 40 else v for k, v in record.items()})


def check_one_row(record: dict, fields=CLAIM_FIELDS, as_of=None) -> tuple:
    expected = frame_outcome(record, fields, as_of)
    assert_same(expected, record_outcome(record, fields, as_of), record, "one-row:")
    return expected


# --- the corpus: generated claims as a client sends them -------------------------------------------

def wire_records(claims: pd.DataFrame) -> list[dict]:
    """Claims as JSON bodies (models/pyfunc.py::wire_format, then json): ISO text dates, float numbers,
    true/false, missing values left out."""
    columns = {}
    for spec in CLAIM_FIELDS:
        values = claims[spec.name]
        if spec.kind == "date":
            values = values.dt.strftime("%Y-%m-%d")
        elif spec.kind == "datetime":
            values = values.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif spec.kind in ("integer", "number"):
            values = values.astype("float64")
        columns[spec.name] = values.astype(object).where(values.notna(), None).tolist()
    return [{name: column[i] for name, column in columns.items() if column[i] is not None}
            for i in range(len(claims))]


def _shift(text: str, hours: int, minutes: int = 0) -> str:
    """A UTC report time 'YYYY-MM-DDTHH:MM:SSZ' written in another UTC offset."""
    local = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ") + timedelta(hours=hours, minutes=minutes)
    sign = "+" if hours >= 0 else "-"
    return f"{local:%Y-%m-%dT%H:%M:%S}{sign}{abs(hours):02d}:{abs(minutes):02d}"


# Numbers the generator only ever makes whole; amounts and premiums have cents, so stay floats here
# (a column mixing 12 and 12.5 is checked one row at a time, among the broken claims).
WHOLE_NUMBERS = tuple(f.name for f in CLAIM_FIELDS if f.kind == "integer") + ("coverage_limit", "deductible")


def _ints(record: dict) -> dict:
    """Whole numbers sent as JSON integers, as most clients do."""
    return {k: (int(v) if k in WHOLE_NUMBERS else v) for k, v in record.items()}


VARIANTS = {  # each keeps every column to one JSON type, so whole variants can be checked as batches
    "as sent": lambda r: r,
    "integers": _ints,
    "offset +02:00": lambda r: {**r, "report_date": _shift(r["report_date"], 2)},
    "offset -05:30": lambda r: {**r, "report_date": _shift(r["report_date"], -5, -30)},
    "milliseconds": lambda r: {**r, "report_date": r["report_date"][:-1] + ".250Z"},
    "nanoseconds": lambda r: {**r, "report_date": r["report_date"][:-1] + ".999999999Z"},
    "space, no zone": lambda r: {**r, "report_date": r["report_date"][:-1].replace("T", " ")},
    "minutes only": lambda r: {**r, "report_date": r["report_date"][:16] + "Z"},
    "report date only": lambda r: {**r, "report_date": r["report_date"][:10]},
    "dates at UTC midnight": lambda r: {**r, "loss_date": r["loss_date"] + "T00:00:00Z",
                                        "policy_start_date": r["policy_start_date"] + "T02:00:00+02:00"},
    "with unknown keys": lambda r: {**r, "is_fraud": True, "adjuster_note": "call back", "zz": 1.5},
}


@pytest.fixture(scope="module")
def wire_claims() -> list[dict]:
    return wire_records(generate_claims(2000, seed=5))


# --- valid claims ------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", list(VARIANTS))
def test_generated_claims_agree_with_the_frame_validator(wire_claims, variant):
    records = [VARIANTS[variant](r) for r in wire_claims]
    for as_of in (None, LATE_AS_OF):
        expected = batch_outcomes(records, as_of=as_of)
        n_valid = 0
        for record, want in zip(records, expected):
            assert_same(want, record_outcome(record, as_of=as_of), record, f"{variant}, as_of={as_of}:")
            n_valid += not want[1]
        assert n_valid == len(records)  # the generator's claims are valid, whichever way they are written


def test_batched_reference_equals_one_row_frames(wire_claims):
    """The batch shortcut above changes nothing: a sample of every variant, one row at a time."""
    rng = random.Random(11)
    for variant, make in VARIANTS.items():
        sample = rng.sample(wire_claims, 8)
        records = [make(r) for r in sample]
        for record, batched in zip(records, batch_outcomes(records, as_of=AS_OF)):
            assert_same(check_one_row(record, as_of=AS_OF), batched, record, f"{variant} batch vs one-row:")


def test_lowercase_z_and_future_claims_agree(wire_claims):
    rng = random.Random(12)
    for record in rng.sample(wire_claims, 25):
        check_one_row({**record, "report_date": record["report_date"][:-1] + "z"})
        check_one_row(record, as_of=AS_OF)  # claims after AS_OF are in the future


# --- broken claims -----------------------------------------------------------------------------

TEXT_BAD = [123, -1, 2 ** 63, 2 ** 64, 1.5, True, "", " ", "x" * 10_000, "x" * 129, "marine", "AUTO", "é" * 65]
NUMBER_BAD = ["12.5", " 12 ", "1e5", "abc", "", "nan", "inf", "-inf", "1e400", "١٢", "0x10", "-0", True, False,
              -1, -0.0, 0, 0.001, 1e9, 1e9 + 1, 1e300, 10 ** 300, 2 ** 53 + 1, float("nan"), float("inf"),
              float("-inf")]
INTEGER_BAD = [2.5, -0.5, 1.0, 1e300, 10 ** 300, 2 ** 53, 2 ** 53 + 1, 2 ** 53 + 2, "3", " 7 ", "3.0", "3.5", "abc",
               "inf", True, -1, 13, 24, 1001, 121, float("inf"), float("nan")]
BOOLEAN_BAD = ["yes", "no", "TRUE", " true ", "False", "1", "0", " 0 ", "", 2, 1, 0, -1, 1.0, 0.0, "t"]
DATE_BAD = ["2024-03-01T00:00:30Z", "2024-03-01T00:01Z", "3000-01-01", "0020-01-01", "0000-01-01", "2025-02-30", "2023-02-29", "2024-02-29", "not a date", "",
            "NaT", "2024-03-01T10:00:00Z", "2024-03-01T00:00:00+02:00", "2024-03-01T02:00:00+02:00",
            "2024-03-01T00:00:00.5Z", "2024-3-1", "20240301", "2024/03/01", "2024-03", "2024", " 2024-03-01",
            "2024-03-01 ", "1899-12-31", "1900-01-01", "2100-12-31", "2101-01-01", "01/03/2024", 20240301, 1.5,
            True, "1600-01-01T00:00:00.123456789Z", "2024-03-01T24:00:00Z", "2024-13-01"]
DATETIME_BAD = DATE_BAD + ["2024-03-01T10:00:00z", "2024-03-01t10:00:00Z", "2024-03-01T10:00:00+24:00",
                           "2024-03-01T10:00:00+23:59", "2024-03-01T10:00:00-0530", "2024-03-01T10:00:00+2",
                           "2024-03-01T10", "2024-03-01T1000", "2024-03-01T10:00:00 Z", "2024-03-01T10:00:00Z ",
                           "2100-12-31T12:00:00Z", "2024-03-01T10:00:00.123456789123Z", "2024-03-01T10:00:60Z",
                           "2024-03-01T10:00:00.Z", "2024-03-01T10:00:00,5Z", "1969-12-31T23:59:59.9Z"]
BAD_VALUES = {"string": TEXT_BAD, "number": NUMBER_BAD, "integer": INTEGER_BAD, "boolean": BOOLEAN_BAD,
              "date": DATE_BAD, "datetime": DATETIME_BAD}
# Fields declared like one before them (an identifier like claimant_id, a limit like coverage_limit)
# get a few of their kind's bad values each, not all: the one-row frame reference takes ~15 ms a claim.
LIKE_AN_EARLIER_FIELD = {"claimant_id", "payee_account", "claimant_phone", "claimant_address", "provider_id",
                         "deductible", "annual_premium"}


def mutated_claims(base: list[dict]) -> list[tuple[dict, datetime | None]]:
    """Hundreds of broken claims, each with the clock to validate it against."""
    rng = random.Random(13)
    cases: list[dict] = []
    for spec in CLAIM_FIELDS:
        values = BAD_VALUES[spec.kind]
        for value in (rng.sample(values, 4) if spec.name in LIKE_AN_EARLIER_FIELD else values):
            cases.append({**rng.choice(base), spec.name: value})
        cases.append({**rng.choice(base), spec.name: None})
        cases.append({k: v for k, v in rng.choice(base).items() if k != spec.name})
    cases.append({})
    cases.append({"claim_id": "only"})
    for record in rng.sample(base, 15):  # report before loss, with the loss date good or bad
        loss = datetime.strptime(record["loss_date"], "%Y-%m-%d")
        cases.append({**record, "report_date": f"{loss - timedelta(seconds=1):%Y-%m-%dT%H:%M:%SZ}"})
        cases.append({**record, "report_date": f"{loss - timedelta(days=3):%Y-%m-%d}", "claim_amount": -1})
        cases.append({**record, "report_date": f"{loss:%Y-%m-%d}T00:00:00+01:00"})
        cases.append({**record, "report_date": "1999-01-01T00:00:00Z", "loss_date": "2025-02-30"})
    future = [AS_OF + timedelta(days=1), AS_OF + timedelta(days=1, seconds=1), AS_OF + timedelta(days=400)]
    for when in future:  # the future rule, with a clock
        for name in ("loss_date", "report_date", "customer_since", "policy_start_date"):
            spec = FIELDS_BY_NAME[name]
            text = f"{when:%Y-%m-%d}" if spec.kind == "date" else f"{when:%Y-%m-%dT%H:%M:%SZ}"
            cases.append({**rng.choice(base), name: text})
        cases.append({**rng.choice(base), "loss_date": f"{when:%Y-%m-%d}", "report_date": f"{when:%Y-%m-%dT%H:%M:%SZ}",
                      "customer_since": f"{when:%Y-%m-%d}"})
    for _ in range(60):  # several bad fields at once
        record = dict(rng.choice(base))
        for spec in rng.sample(CLAIM_FIELDS, rng.randint(2, 5)):
            record[spec.name] = rng.choice(BAD_VALUES[spec.kind])
        cases.append(record)
    return [(record, AS_OF if i % 2 else None) for i, record in enumerate(cases)]


def test_broken_claims_agree_with_the_frame_validator(wire_claims):
    cases = mutated_claims(wire_claims[:300])
    assert len(cases) > 600
    n_invalid = 0
    for record, as_of in cases:
        typed, errors = check_one_row(record, as_of=as_of)
        n_invalid += bool(errors)
    assert n_invalid > 400


def test_partial_and_extended_schemas_agree(wire_claims):
    rng = random.Random(14)
    cases = [record for record, _ in mutated_claims(wire_claims[300:600])]
    sample = rng.sample(wire_claims, 25) + rng.sample(cases, 50)
    extra_values = [1.5, 2, "2.5", " 3 ", "abc", "inf", True, None, 10 ** 300, float("inf"), "", -7]
    for fields in (REQUIRED_ONLY, WITHOUT_LOSS_DATE):
        for record in sample:
            check_one_row(record, fields=fields, as_of=AS_OF)
    for i, record in enumerate(sample):
        if i % 7:
            record = {**record, "extra_x": extra_values[i % len(extra_values)]}
        check_one_row(record, fields=WITH_EXTRA, as_of=AS_OF if i % 2 else None)


def test_what_the_frame_validator_raises_on_is_raised_the_same(wire_claims):
    record = wire_claims[0]
    for broken in ({**record, "region": "north\ud800"}, {**record, "note": "\udc00"}):
        expected = check_one_row(broken)
        assert isinstance(expected[0], type) and issubclass(expected[0], Exception)


def test_integers_beyond_any_float_and_infinite_text_are_reported_not_raised(wire_claims):
    record = wire_claims[0]
    cases = {("witnesses", 10 ** 400): "is far too large", ("claim_amount", -(10 ** 400)): "is far too large",
             ("claim_amount", "inf"): "must be a number", ("claim_amount", "1e400"): "must be a number",
             ("witnesses", "-Infinity"): "must be a number", ("witnesses", float("inf")): "must be a finite number"}
    for (name, value), reason in cases.items():
        check_one_row({**record, name: value})
        _, errors = validate_record({**record, name: value})
        assert [(e["field"], e["reason"]) for e in errors] == [(name, reason)], (name, value)
    frame = pd.DataFrame([{**record, "witnesses": 10 ** 400}, {**record, "claim_id": "other", "witnesses": 2}])
    report = validate_claims(frame)
    assert report.errors[["row", "column", "reason"]].values.tolist() == [[0, "witnesses", "is far too large"]]


def test_words_are_not_dates(wire_claims):
    for word in ("now", "today", "tomorrow"):
        _, errors = validate_record({**wire_claims[0], "report_date": word})
        assert [e["field"] for e in errors] == ["report_date"]
        check_one_row({**wire_claims[0], "report_date": word})


def test_values_of_types_json_does_not_produce_go_to_the_frame_validator(wire_claims):
    record = wire_claims[1]
    for odd in (np.float64(12.5), np.int64(3), pd.Timestamp("2024-03-01"), datetime(2024, 3, 1), ["a"], {"a": 1}):
        for name in ("claim_amount", "witnesses", "loss_date", "region"):
            check_one_row({**record, name: odd})


# --- behaviour, stated directly ------------------------------------------------------------------

def test_a_valid_claim_comes_back_typed():
    typed, errors = validate_record(_claim(report_date="2024-03-02T11:30:45.9+02:00", police_report="false",
                                           coverage_limit=50000))
    assert errors == []
    assert typed == {
        "claim_id": "C1", "policy_id": "P1", "claimant_id": "K1", "line_of_business": "auto",
        "loss_type": "collision", "policy_start_date": datetime(2024, 1, 1), "loss_date": datetime(2024, 3, 1),
        "report_date": datetime(2024, 3, 2, 9, 30, 45), "claim_amount": 2500.0, "coverage_limit": 50000.0,
        "loss_hour": 14, "police_report": False, "witnesses": 1, "payee_account": "acct-1",
    }
    assert type(typed["coverage_limit"]) is float and type(typed["loss_hour"]) is int


def test_a_negative_amount_is_named_with_its_reason():
    assert validate_record(_claim(claim_amount=-5))[1] == [
        {"field": "claim_amount", "value": "-5", "reason": "must be greater than 0"}]


def test_a_huge_value_is_quoted_not_echoed():
    _, errors = validate_record(_claim(payee_account="x" * 10_000_000))
    assert [(e["field"], e["reason"]) for e in errors] == [("payee_account", "is longer than 128 characters")]
    assert len(errors[0]["value"]) <= 100 and errors[0]["value"].endswith("... (10000002 chars)")


def test_rules_across_fields_and_the_clock():
    _, errors = validate_record(_claim(report_date="2024-02-27T10:00:00Z"))
    assert errors == [{"field": "report_date", "value": '"2024-02-27T10:00:00Z"',
                       "reason": "is before loss_date 2024-03-01"}]
    assert validate_record(_claim(loss_date="2024-03-01T00:00:00"))[1] == []
    _, errors = validate_record(_claim(), as_of=datetime(2024, 2, 1))
    assert [(e["field"], e["reason"]) for e in errors] == [("loss_date", "is in the future"),
                                                           ("report_date", "is in the future")]
    assert validate_record(_claim(), as_of=datetime(2024, 3, 1, 9, 30))[1] == []  # a day's clock skew allowed


def test_every_missing_required_field_is_reported_in_schema_order():
    _, errors = validate_record({"claim_amount": 10})
    assert [e["field"] for e in errors] == [n for n in REQUIRED_FIELDS if n != "claim_amount"]
    assert {e["reason"] for e in errors} == {"is required but missing"}


# --- batches: typed frame and the duplicate rule ---------------------------------------------------

def test_validated_records_make_the_frame_the_frame_validator_types(wire_claims):
    records = [dict(r) for r in wire_claims[:600]]
    for i, record in enumerate(records):  # optional fields absent here and there
        for name in ("coverage_limit", "witnesses", "police_report", "customer_since", "region")[: i % 6]:
            record.pop(name, None)
    typed = [validate_record(r)[0] for r in records]
    frame = typed_frame(typed, CLAIM_FIELDS)
    expected = validate_claims(pd.DataFrame(records)).claims
    assert list(frame.columns) == [f.name for f in CLAIM_FIELDS if f.name in expected.columns]
    pd.testing.assert_frame_equal(frame, expected[list(frame.columns)].reset_index(drop=True))


def test_a_claim_id_twice_in_a_batch_flags_both_as_the_frame_does(wire_claims):
    records = [dict(r) for r in wire_claims[:5]]
    records[3]["claim_id"] = records[1]["claim_id"]
    records[4]["claim_amount"] = -1.0
    records[4]["claim_id"] = records[0]["claim_id"]
    found = duplicate_errors([validate_record(r)[0] for r in records], records)
    report = validate_claims(pd.DataFrame(records))
    dup = report.errors.loc[report.errors["reason"] == "appears more than once in this batch"]
    assert sorted(found) == sorted(dup["row"].tolist()) == [0, 1, 3, 4]
    assert [found[i]["value"] for i in sorted(found)] == dup.sort_values("row")["value"].tolist()


# --- one specification: every rule and reason is stated once, in features.record_spec -----------
#
# Each test changes the specification and finds the change in what both validators report.
# `check_one_row` holds the two to each other; the assertions after it show the change arrived.

def _unplanned(fields=CLAIM_FIELDS) -> tuple:
    """The schema as a tuple the record validator has not planned for, so it reads the (changed)
    specification afresh."""
    return tuple(list(fields))


def _reported(record: dict, as_of=None) -> list[tuple[str, str]]:
    _, errors = check_one_row(record, _unplanned(), as_of)
    return [(e["field"], e["reason"]) for e in errors]


CLOCK = datetime(2024, 2, 1)  # before _claim()'s loss and report dates
REASON_CASES = {  # each reason the specification states: a claim that earns it, its clock, the fields it names
    "MISSING": ({"policy_id": None}, None, ["policy_id"]),
    "NOT_TEXT": ({"region": 1.5}, None, ["region"]),
    "EMPTY": ({"claim_id": ""}, None, ["claim_id"]),
    "BLANK": ({"claim_id": "  "}, None, ["claim_id"]),
    "EDGE_SPACE": ({"claim_id": "C1 "}, None, ["claim_id"]),
    "NOT_NUMBER": ({"claim_amount": "a lot"}, None, ["claim_amount"]),
    "NOT_NUMBER_BOOL": ({"claim_amount": True}, None, ["claim_amount"]),
    "NOT_FINITE": ({"claim_amount": float("inf")}, None, ["claim_amount"]),
    "NOT_WHOLE": ({"witnesses": 2.5}, None, ["witnesses"]),
    "TOO_LARGE": ({"witnesses": 10 ** 400}, None, ["witnesses"]),
    "NOT_BOOLEAN": ({"police_report": "maybe"}, None, ["police_report"]),
    "NOT_DATETIME": ({"report_date": "yesterday"}, None, ["report_date"]),
    "NOT_DATE": ({"loss_date": "01/03/2024"}, None, ["loss_date"]),
    "OUTSIDE_DATES": ({"loss_date": "3000-01-01", "report_date": "0000-01-01T00:00:00Z"}, None,
                      ["loss_date", "report_date"]),
    "IN_FUTURE": ({}, CLOCK, ["loss_date", "report_date"]),
}
REASON_FUNCTION_CASES = {  # each function that words a reason: a claim that earns it, the field it names
    "too_long": ({"payee_account": "x" * 200}, "payee_account"),
    "not_one_of": ({"line_of_business": "marine"}, "line_of_business"),
    "below_minimum": ({"claim_amount": -5}, "claim_amount"),
    "above_maximum": ({"loss_hour": 24}, "loss_hour"),
    "contains_unsafe": ({"claim_id": "C\u202e1"}, "claim_id"),
}


@pytest.mark.parametrize("name", list(REASON_CASES))
def test_a_reason_reworded_in_the_specification_is_reported_so_by_both_validators(monkeypatch, name):
    changes, as_of, fields = REASON_CASES[name]
    monkeypatch.setattr(record_spec, name, f"<{name}>")
    assert _reported(_claim(**changes), as_of) == [(field, f"<{name}>") for field in fields]


@pytest.mark.parametrize("name", list(REASON_FUNCTION_CASES))
def test_a_reason_function_reworded_in_the_specification_is_reported_so_by_both_validators(monkeypatch, name):
    changes, field = REASON_FUNCTION_CASES[name]
    monkeypatch.setattr(record_spec, name, lambda *args: f"<{name}{args}>")
    [(reported_field, reason)] = _reported(_claim(**changes))
    assert reported_field == field and reason.startswith(f"<{name}(")


def test_every_reason_the_specification_states_is_reworded_above():
    # Every text constant of the specification is a reason, but for the schema's dates and a field name.
    stated = {name for name, value in vars(record_spec).items() if name.isupper() and isinstance(value, str)
              and name not in vars(schema) and value not in FIELDS_BY_NAME}
    assert stated == set(REASON_CASES) | {"DUPLICATE"}  # DUPLICATE: the batch test below
    worded = {name for name, value in vars(record_spec).items()
              if inspect.isfunction(value) and value.__module__ == record_spec.__name__}
    checks = {"bounds", "horizon", "quote", "unsafe_text", "claim_id_problem"}  # checks, not wordings
    assert worded - checks == set(REASON_FUNCTION_CASES) | {"before"}  # before: rules below


def test_rules_across_fields_changed_in_the_specification_change_both_validators(monkeypatch):
    loss_before_policy = record_spec.CrossFieldRule(
        "loss_date", operator.lt, "policy_start_date", lambda other, day: f"<before {other} {day:%Y-%m-%d}>")
    monkeypatch.setattr(record_spec, "CROSS_FIELD_RULES", record_spec.CROSS_FIELD_RULES + (loss_before_policy,))
    monkeypatch.setattr(record_spec, "NOT_IN_FUTURE", ("policy_start_date",))
    monkeypatch.setattr(record_spec, "FUTURE_TOLERANCE", timedelta(0))
    record = _claim(loss_date="2023-12-20", report_date="2023-12-19T10:00:00Z", policy_start_date="2024-01-01")
    assert _reported(record, as_of=datetime(2023, 12, 31, 23)) == [
        ("report_date", "is before loss_date 2023-12-20"),
        ("loss_date", "<before policy_start_date 2024-01-01>"),
        ("policy_start_date", "is in the future"),  # an hour ahead, with no tolerance left
    ]
    assert [field for field, _ in _reported(record)] == ["report_date", "loss_date"]  # no clock, no future


def test_bounds_changed_in_the_specification_change_both_validators(monkeypatch):
    declared = record_spec.bounds

    def with_a_fast_track_ceiling(field):
        found = declared(field)
        if field.name != "claim_amount":
            return found
        return found._replace(high=10_000, above="<above the fast-track ceiling>")

    monkeypatch.setattr(record_spec, "bounds", with_a_fast_track_ceiling)
    assert _reported(_claim(claim_amount=12_000.5)) == [("claim_amount", "<above the fast-track ceiling>")]
    assert _reported(_claim(claim_amount=9_999.5)) == []


def test_text_rules_changed_in_the_specification_change_both_validators(monkeypatch):
    no_dashes = record_spec.TextRule(lambda text: "<no dashes>" if "-" in text else None)
    monkeypatch.setattr(record_spec, "TEXT_RULES", {**record_spec.TEXT_RULES, "policy_id": no_dashes})
    assert _reported(_claim(policy_id="P-1", claim_id="C 1")) == [("policy_id", "<no dashes>")]
    monkeypatch.setattr(record_spec, "TEXT_RULES", {})
    assert _reported(_claim(claim_id=" C1\x00")) == []


UNSAFE_CLAIM_IDS = {  # a claim id -> the reason both validators and claim_id_problem give
    "C1\x00": "contains a control character (U+0000)",
    "\x1b[31mC1": "contains a control character (U+001B)",
    "C1\u202egpj.exe": "contains a format character (U+202E)",
    "C\u20661": "contains a format character (U+2066)",
    "C\u200d1": "contains a format character (U+200D)",
    "C\ufeff1": "contains a format character (U+FEFF)",
    "C1\u2029": "contains a paragraph separator (U+2029)",
    "C1\nC2": "contains a control character (U+000A)",
    "   ": "is only spaces",
    " C1": "starts or ends with a space",
    "C1\u00a0": "starts or ends with a space",
    "": "is empty",
    "x" * 129: "is longer than 128 characters",
}
SAFE_CLAIM_IDS = ["2025/000777", "a?b#c%d e", "\u00c4rzte-\u00fc", "\u8acb\u6c42-7", "x" * 128, "C\u00a0 1", "%2F"]


@pytest.mark.parametrize("claim_id", list(UNSAFE_CLAIM_IDS), ids=[ascii(i)[:20] for i in UNSAFE_CLAIM_IDS])
def test_an_unsafe_claim_id_is_refused_with_its_reason_by_both_validators(claim_id):
    reason = UNSAFE_CLAIM_IDS[claim_id]
    assert _reported(_claim(claim_id=claim_id)) == [("claim_id", reason)]
    assert record_spec.claim_id_problem(claim_id) == reason  # the same rule where a claim id comes alone


def test_every_text_a_rule_says_passes_does_pass_it():
    rng = random.Random(15)
    alphabet = [chr(c) for c in range(0x2100)] + ["\u202e", "\u2066", "\ufeff", "\u3000"]
    texts = ["".join(rng.choices(alphabet, k=rng.randint(1, 6))) for _ in range(20_000)]
    texts += [chr(c) for c in range(0x3000)]
    for name, rule in record_spec.TEXT_RULES.items():
        passing = [t for t in texts if re.fullmatch(rule.passes, t)]
        assert len(passing) > 50, name
        assert [t for t in passing if rule.problem(t) is not None] == [], name
        refused = [t for t in texts if rule.problem(t) is not None]
        assert refused and not [t for t in refused if re.fullmatch(rule.passes, t)], name


@pytest.mark.parametrize("claim_id", SAFE_CLAIM_IDS)
def test_claim_ids_with_slashes_query_marks_and_any_letters_are_accepted(claim_id):
    assert _reported(_claim(claim_id=claim_id)) == []
    assert record_spec.claim_id_problem(claim_id) is None


def test_quoting_and_the_duplicate_rule_come_from_the_specification(monkeypatch, wire_claims):
    monkeypatch.setattr(record_spec, "DUPLICATE", "<DUPLICATE>")
    monkeypatch.setattr(record_spec, "UNIQUE_IN_BATCH", "policy_id")
    monkeypatch.setattr(record_spec, "quote", lambda value: f"<{type(value).__name__}>")
    records = [dict(r) for r in wire_claims[:3]]
    records[2]["policy_id"] = records[0]["policy_id"]
    found = duplicate_errors([validate_record(r)[0] for r in records], records)
    report = validate_claims(pd.DataFrame(records))
    assert report.errors[["row", "column", "value", "reason"]].values.tolist() == [
        [0, "policy_id", "<str>", "<DUPLICATE>"], [2, "policy_id", "<str>", "<DUPLICATE>"]]
    assert found == {i: {"field": "policy_id", "value": "<str>", "reason": "<DUPLICATE>"} for i in (0, 2)}
