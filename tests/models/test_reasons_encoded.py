"""A code read as its fraud rate reads as a sentence about that rate; every other reason reads as before."""

import re

import numpy as np
import pytest

from models.config import Config
from models.explain import Explainer
from models.reasons import reason_sentence
from training.data import split_claims
from training.fit import Extras, fit_bundle
from training.generate import add_code_column

RATE = re.compile(r"Dealer code with a fraud rate of \d+\.\d% among training claims with it; "
                  r"\d+\.\d% among all training claims")
OVERALL = re.compile(r"Dealer code read as a fraud rate of \d+\.\d%: that of all training claims, "
                     r"as for any new to the model or not given")


@pytest.fixture(scope="module")
def coded_run(typed_claims):
    """A bundle fitted with a 300-level dealer code passed through (more levels than the default limit)."""
    claims = add_code_column(typed_claims.iloc[:10_000], levels=300, seed=2)
    return claims, fit_bundle(claims, split_claims(claims, 0.15, 0.15, 0), Config(), extras=Extras(("dealer_code",)))


def test_a_code_read_as_its_fraud_rate_is_explained_by_that_rate(coded_run):
    claims, fitted = coded_run
    bundle = fitted.bundle
    encoding = bundle.builder.encoded_["dealer_code"]
    assert bundle.typical_values["dealer_code"] == encoding.unseen  # "typical" is the overall rate
    test = claims.loc[fitted.split.test].head(400).copy()
    test.iloc[:40, test.columns.get_loc("dealer_code")] = "D-NEW"  # a dealer the model never saw
    matrix = bundle.builder.transform(test, claims.loc[~fitted.split.test])
    reasons = Explainer(bundle).reasons(matrix, top=len(bundle.builder.feature_names_))
    codes = test["dealer_code"].tolist()
    overall, seen = round(encoding.unseen, 4), 0
    for code, per_model in zip(codes, reasons):
        for reason in (r for model in per_model.values() for r in model if r.feature == "dealer_code"):
            rate = round(encoding.values.get(code, encoding.unseen), 4)
            assert reason.value == rate  # what the model read for this claim's code, as explain shows it
            assert f"{rate:.1%}" in reason.text
            assert code != "D-NEW" or rate == overall
            assert (OVERALL if rate == overall else RATE).fullmatch(reason.text), reason.text
            seen += 1
    assert seen > 100


def test_native_categories_still_read_as_their_names(coded_run):
    claims, fitted = coded_run
    explainer = Explainer(fitted.bundle)
    matrix = fitted.matrix[fitted.split.test][:200]
    texts = {r.text for claim in explainer.reasons(matrix, top=40) for model in claim.values() for r in model
             if r.feature == "loss_type"}
    assert texts and all(re.fullmatch(r"Loss type: [a-z_]+", t) for t in texts)


@pytest.mark.parametrize("feature, label, value, typical, text", [
    ("region", "region", "north", None, "Region: north"),
    ("region", "region", None, None, "No region given"),
    ("extra_incident_severity", "extra incident severity", "Major Damage", None,
     "Extra incident severity: Major Damage"),
    ("extra_umbrella_limit", "extra umbrella limit", 5e6, None, "Extra umbrella limit: 5,000,000"),
    ("report_delay_days", "days from the loss to the report", 41.2, 2.6,
     "Reported 41 days after the loss; most claims are reported within 3 days"),
    ("police_report", "police report filed", float("nan"), None, "Not stated whether a police report was filed"),
])
def test_other_reasons_read_as_they_did(feature, label, value, typical, text):
    assert reason_sentence(feature, label, value, typical) == text


@pytest.mark.parametrize("value, text", [
    (0.0312, "Region with a fraud rate of 3.1% among training claims with it; 2.3% among all training claims"),
    (0.0231, "Region read as a fraud rate of 2.3%: that of all training claims, as for any new to the model or not "
             "given"),
])
def test_a_category_read_as_a_rate_says_the_rate_not_a_bare_number(value, text):
    assert reason_sentence("region", "region, read as its fraud rate in the training claims", value, 0.02312) == text


@pytest.mark.parametrize("value, text", [
    (0.0034, "Region seen on 0.3% of training claims"),
    (0.0, "Region new to the model: no training claim had it"),
    (np.nan, "No region given"),
])
def test_a_category_read_as_its_share_says_so(value, text):
    assert reason_sentence("region", "region, read as its share of the training claims", value, None) == text
