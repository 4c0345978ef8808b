"""The record shapes a version takes, in-process: the extract's own record through the version's mapping
answers as the canonical record does, says what the mapping changed, and names the extract's columns."""

import copy
from datetime import datetime

import pytest

from features.mapping import parse_mapping
from models.config import Deadlines
from serving.scoring import Scorer
from serving.shapes import CANONICAL, EXTRACT, RecordShapes
from serving.store import ClaimStore

NOW = datetime(2026, 11, 25, 12, 0, 0)
RULES = {
    "name": "kasko",
    "fields": {
        "claim_id": {"column": "Nr"}, "policy_id": {"column": "Vertrag"}, "claimant_id": {"column": "Kunde"},
        "line_of_business": {"column": "Sparte", "values": {"K": "auto", "H": "property"}},
        "loss_type": {"column": "Art"}, "policy_start_date": {"column": "Beginn", "format": "%d.%m.%Y"},
        "loss_date": {"column": "Datum", "format": "%d.%m.%Y"},
        "report_date": {"column": "Meldung", "format": "%d.%m.%Y %H:%M"},
        "claim_amount": {"column": "Betrag"}, "claimant_age": {"column": "Alter", "out_of_range": "missing"},
        "witnesses": {"column": "witnesses"},
    },
    "labels": {"is_fraud": {"column": "Betrug", "true_values": ["J"], "false_values": ["N"]}},
}
RAW = {"Nr": "K-1", "Vertrag": "V1", "Kunde": "P1", "Sparte": "K", "Art": "collision", "Beginn": "01.02.2023",
       "Datum": "03.03.2025", "Meldung": "04.03.2025 09:30", "Betrag": "4200.5", "Alter": "44", "witnesses": "2"}
CANONICAL_RECORD = {"claim_id": "K-1", "policy_id": "V1", "claimant_id": "P1", "line_of_business": "auto",
                    "loss_type": "collision", "policy_start_date": "2023-02-01", "loss_date": "2025-03-03",
                    "report_date": "2025-03-04T09:30:00Z", "claim_amount": 4200.5, "claimant_age": 44, "witnesses": 2}


@pytest.fixture(scope="module")
def scorer(fitted_run, tmp_path_factory):
    bundle = copy.copy(fitted_run.bundle)
    bundle.mapping = {"rules": RULES, "name": "kasko", "columns": [*{c["column"] for c in RULES["fields"].values()},
                                                                 "Schadenort"], "example": [RAW]}
    store = ClaimStore(f"sqlite:///{tmp_path_factory.mktemp('shapes') / 'claims.db'}")
    return Scorer(bundle, "1", store, Deadlines())


def test_the_shape_is_told_by_the_columns_only_the_extract_has(scorer):
    shapes = scorer.shapes
    assert shapes.names == (CANONICAL, EXTRACT)
    assert shapes.shape_of(RAW) == EXTRACT and shapes.shape_of(CANONICAL_RECORD) == CANONICAL
    assert shapes.shape_of({"witnesses": 2}) == CANONICAL  # a name both shapes share decides nothing
    assert shapes.shape_of({"Schadenort": "Bonn", "witnesses": "2"}) == EXTRACT  # a column the mapping does not read
    assert RecordShapes(None, scorer.bundle.claim_fields).shape_of(RAW) == CANONICAL


def test_an_extract_record_answers_as_its_canonical_record(scorer):
    raw, canonical = (scorer.score([record], now=NOW).results[0] for record in (RAW, CANONICAL_RECORD))
    assert raw["scores"] == canonical["scores"] and raw["reasons"] == canonical["reasons"]
    assert raw["claim_id"] == "K-1" and raw["mapping_notes"] is None


def test_a_value_the_mapping_sets_missing_is_said_in_that_claims_answer_only(scorer):
    young = dict(RAW, Nr="K-2", Alter="7")
    results = scorer.score([dict(RAW, Nr="K-3"), young, dict(RAW, Nr="K-4", Schadenort="Bonn")], now=NOW).results
    assert [r["mapping_notes"] for r in results] == [
        None, ["claimant_age (from Alter): 1 values outside 14 to 120 set missing: '7' (1 rows)"], None]
    without_age = {k: v for k, v in CANONICAL_RECORD.items() if k != "claimant_age"} | {"claim_id": "K-5"}
    assert results[1]["scores"] == scorer.score([without_age], now=NOW).results[0]["scores"]
    stored = scorer.store.decisions_for("K-2")[0]["response"]
    assert stored["mapping_notes"] == results[1]["mapping_notes"]


def test_every_problem_of_an_extract_record_names_its_column_at_once(scorer):
    bad = dict(RAW, Sparte="B", Betrag="-1", Datum="31.02.2025", Farbe="rot")
    del bad["Vertrag"]
    result = scorer.score([bad], now=NOW).results[0]
    assert result["claim_id"] == "K-1"
    assert {(e["field"], e["reason"]) for e in result["errors"]} == {
        ("Farbe", "is not a column of the extract this model was trained on"),
        ("Sparte", "has a value the mapping does not map (to line_of_business)"),
        ("Datum", "does not parse as a date with format '%d.%m.%Y' (to loss_date)"),
        ("Betrag", "must be greater than 0 (as claim_amount)"),
        ("Vertrag", "is required but missing (as policy_id)"),
    }


def test_the_mapping_a_version_carries_is_the_one_it_was_trained_with(scorer):
    assert scorer.shapes.mapping == parse_mapping(RULES)
    described = scorer.shapes.describe({"claim_id": "x"})
    assert described[EXTRACT]["example"] == RAW and described[EXTRACT]["columns_not_read"] == ["Schadenort"]
