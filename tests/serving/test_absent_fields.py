"""Nothing assumes an optional field: versions trained on extracts that each lack some canonical
fields train, seed their store, score one claim and a batch, explain, and show their case page."""

from datetime import datetime

import pytest

from features.builder import CLAIM_FEATURES
from features.history import PERSON_FIELDS, TIME_FIELDS, history_feature_requirements
from features.schema import REQUIRED_FIELDS
from models.config import Config, Deadlines
from models.pyfunc import wire_format
from serving import pages
from serving.schemas import BatchResult, Decision
from serving.scoring import Scorer
from serving.store import ClaimStore
from training.data import split_claims, validate_for_training
from training.fit import fit_bundle
from training.generate import generate_claims

pytestmark = pytest.mark.slow
NOW = datetime(2026, 11, 25, 12, 0, 0)
# Every canonical field but claim_id is left out by at least one extract, and every hard rule and
# every feature loses an input in at least one.
LACKING = [
    ("claim_amount",), ("report_date",), ("claimant_id",), ("policy_id",), ("loss_type", "line_of_business"),
    ("loss_date", "policy_start_date"), ("coverage_limit", "deductible", "annual_premium"),
    ("customer_since", "claimant_age", "region"), ("payee_account", "claimant_phone", "claimant_address", "provider_id"),
    ("police_report", "attorney_involved", "witnesses", "injuries", "vehicles_involved", "loss_hour"),
]


def test_every_field_but_the_claim_id_is_left_out_somewhere():
    from features.schema import FIELD_NAMES

    assert {f for group in LACKING for f in group} == set(FIELD_NAMES) - {"claim_id"}
    assert set(REQUIRED_FIELDS) - {"claim_id"} <= {f for group in LACKING for f in group}


@pytest.fixture(scope="module")
def generated():
    return generate_claims(4_000, seed=21)


@pytest.mark.parametrize("lacking", LACKING, ids=["-".join(group) for group in LACKING])
def test_a_version_without_these_fields_trains_serves_and_explains(lacking, generated, tmp_path):
    frame = generated.drop(columns=list(lacking))
    report = validate_for_training(frame, partial=True)
    claims = report.claims.sort_values("loss_date" if "loss_date" in frame else "claim_id", kind="stable") \
        .reset_index(drop=True)
    config = Config()
    split = split_claims(claims, 0.15, 0.15, 0)
    bundle = fit_bundle(claims, split, config).bundle
    features = set(bundle.builder.feature_names_)
    needing = {name for name, (spec, _) in CLAIM_FEATURES.items() if set(spec.requires) & set(lacking)}
    # History counts by the report, else the loss, and tells people apart by the claimant, else the policy.
    time = next(f for f in TIME_FIELDS if f not in lacking)
    person = next(f for f in PERSON_FIELDS if f not in lacking)
    history = history_feature_requirements(time, person)
    needing |= {name for name, needs in history.items() if set(needs) & set(lacking)}
    assert needing and not needing & features
    if "report_date" in lacking or "claimant_id" in lacking:  # the fallbacks keep some history
        assert (set(history) - needing) & features
    assert not set(lacking) & {f.name for f in bundle.claim_fields}

    store = ClaimStore(f"sqlite:///{tmp_path / 'claims.db'}")
    store.seed(claims.loc[split.train | split.validation])
    scorer = Scorer(bundle, "1", store, Deadlines())
    new = claims.loc[split.test].head(60)
    wire = wire_format(new, bundle)
    records = [{k: v for k, v in r.items() if v is not None}
               for r in wire.astype(object).where(wire.notna(), None).to_dict(orient="records")]
    one = scorer.score(records[:1], now=NOW).results[0]
    Decision.model_validate(one)
    batch = scorer.score(records[1:], now=NOW)
    assert batch.n_errors == 0, [r for r in batch.results if "errors" in r][:2]
    BatchResult.model_validate({"results": batch.results, "n_scored": len(records) - 1, "n_errors": 0})
    each = scorer.score_each(records[1:4], now=NOW)
    assert [r["decision"] for r in each] == [r["decision"] for r in batch.results[:3]]
    for response in [one, *batch.results]:
        for reasons in response["reasons"].values():
            assert not {r["feature"] for r in reasons} - features
    page = pages.case_page(store.case(one["claim_id"]), NOW, user="ann")
    assert one["claim_id"] in page and "Traceback" not in page
