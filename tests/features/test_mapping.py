"""Dataset mappings: an extract's own conventions to canonical claims, every problem reported."""

from pathlib import Path

import pandas as pd
import pytest

from features.mapping import MappingError, apply_mapping, load_mapping, read_source
from features.schema import CLAIM_FIELDS
from features.validation import validate_claims

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "mappings" / "insurance_claims.yaml"
EXTRACT = ROOT / "tests" / "data" / "insurance_claims.csv"


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def mapped():
    mapping = load_mapping(SHIPPED)
    return apply_mapping(read_source(EXTRACT, mapping), mapping)


def test_shipped_mapping_on_the_public_extract(mapped):
    assert len(mapped) == 1000
    assert {"claim_id", "policy_start_date", "loss_date", "claim_amount", "police_report"} <= set(mapped.columns)
    assert not {"report_date", "customer_since", "paid_as_filed", "payee_account"} & set(mapped.columns)
    assert mapped["is_fraud"].mean() == pytest.approx(0.247)
    assert pd.api.types.is_datetime64_any_dtype(mapped["loss_date"])
    assert str(mapped["loss_hour"].dtype) == "Int64" and str(mapped["police_report"].dtype) == "boolean"
    first = mapped.iloc[0]  # 521585: bound 10/17/2014, incident 1/25/2015, YES police report
    assert first["claim_id"] == "521585" and first["policy_start_date"] == pd.Timestamp("2014-10-17")
    assert first["loss_date"] == pd.Timestamp("2015-01-25") and bool(first["police_report"]) is True
    assert pd.isna(mapped["police_report"].iloc[1])  # "?" means unknown
    assert set(mapped["loss_type"]) == {"collision", "theft", "parked_car"}


def test_the_word_none_is_a_category_not_a_missing_value(mapped):
    assert (mapped["extra_authorities_contacted"] == "None").sum() == 91
    assert mapped["extra_authorities_contacted"].notna().all()


def test_mapped_claims_pass_validation_against_the_fields_they_have(mapped):
    fields = [f for f in CLAIM_FIELDS if f.name in mapped.columns]
    report = validate_claims(mapped, fields=fields, labels=("is_fraud",))
    assert report.ok, report.summary()


def test_every_problem_is_reported_together_with_values_and_counts(tmp_path):
    raw = pd.DataFrame({"id": ["1", "2", "3", "4"], "kind": ["A", "B", "Z", "Z"], "when": ["01.02.2024", "x", "3.3.2024", "bad"],
                        "amt": ["1", "2", "lots", "4"], "fraud": ["Y", "N", "N", "maybe"]})
    mapping = load_mapping(write(tmp_path, """
fields:
  claim_id: {column: id}
  loss_type: {column: kind, values: {"A": theft, "B": glass}}
  loss_date: {column: when, format: "%d.%m.%Y"}
  claim_amount: {column: amt}
  region: {column: area}
labels:
  is_fraud: {column: fraud, true_values: ["Y"], false_values: ["N"]}
"""))
    with pytest.raises(MappingError) as caught:
        apply_mapping(raw, mapping)
    found = {(p.column, p.message): (p.values, p.count) for p in caught.value.problems}
    assert found[("loss_type (from kind)", "has values the mapping does not map")] == (("Z",), 2)
    assert found[("loss_date (from when)", "does not parse as a date with format '%d.%m.%Y'")][1] == 2
    assert found[("claim_amount (from amt)", "is not a number")] == (("lots",), 1)
    assert found[("is_fraud (from fraud)", "has values the mapping does not map")] == (("maybe",), 1)
    assert any(p.column == "region.column" and "'area' is not in the extract" in p.message
               for p in caught.value.problems)
    assert "5 problem(s)" in str(caught.value)


@pytest.mark.parametrize("text, where, message", [
    ("fields:\n  claim_ident: {column: a}\n", "fields.claim_ident", "did you mean claim_id?"),
    ("fields:\n  claim_id: {col: a}\n", "fields.claim_id.col", "unknown rule key"),
    ("fields:\n  claim_id: {column: a, value: b}\n", "fields.claim_id", "exactly one of"),
    ("fields:\n  police_report: {column: p, true_values: [yes]}\n", "fields.police_report", "quote source values"),
    ("fieldz: {}\n", "fieldz", "unknown key"),
    ("fields:\n  claim_id: {join: [branch, no]}\n", "fields.claim_id", "quote source values and column names"),
    ("labels:\n  fraud: {column: f}\nfields:\n  claim_id: {column: a}\n", "labels.fraud", "not a canonical label"),
])
def test_structural_mistakes_name_the_key(tmp_path, text, where, message):
    with pytest.raises(MappingError) as caught:
        load_mapping(write(tmp_path, text))
    assert any(p.column == where and message in p.message for p in caught.value.problems), caught.value


def test_constants_parts_joins_scaling_and_booleans(tmp_path):
    raw = pd.DataFrame({"branch": ["N", "S"], "no": ["7", "9"], "y": ["2024", "2023"], "m": ["2", "12"],
                        "d": ["29", "31"], "k": ["1.5", "?"], "pr": ["J", "N"]})
    mapping = load_mapping(write(tmp_path, """
missing_values: ["?"]
fields:
  claim_id: {join: [branch, "no"], separator: "/"}
  line_of_business: {value: property}
  loss_date: {parts: {year: y, month: m, day: d}}
  claim_amount: {column: k, scale: 1000}
  police_report: {column: pr, true_values: ["J"], false_values: ["N"]}
"""))
    out = apply_mapping(raw, mapping)
    assert out["claim_id"].tolist() == ["N/7", "S/9"]
    assert out["line_of_business"].tolist() == ["property", "property"]
    assert out["loss_date"].tolist() == [pd.Timestamp("2024-02-29"), pd.Timestamp("2023-12-31")]
    assert out["claim_amount"].iloc[0] == 1500.0 and pd.isna(out["claim_amount"].iloc[1])
    assert out["police_report"].tolist() == [True, False]


def test_impossible_date_parts_are_reported(tmp_path):
    raw = pd.DataFrame({"y": ["2023"], "m": ["2"], "d": ["30"]})
    mapping = load_mapping(write(tmp_path, "fields:\n  loss_date: {parts: {year: y, month: m, day: d}}\n"))
    with pytest.raises(MappingError, match="is not a real date"):
        apply_mapping(raw, mapping)
