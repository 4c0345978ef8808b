"""One claim takes its own fast path; it must answer exactly as the batch path does (whose features
the store and feature tests hold to the offline pipeline)."""

import copy
from datetime import datetime

import pytest

from models.config import Deadlines
from models.pyfunc import wire_format
from serving.schemas import BatchResult, ClaimError, Decision
from serving.scoring import Scorer
from serving.store import ClaimStore
from training.generate import generate_claims

NOW = datetime(2026, 11, 25, 12, 0, 0)


def _as_json(frame, bundle) -> list[dict]:
    wire = wire_format(frame, bundle)
    records = wire.astype(object).where(wire.notna(), None).to_dict(orient="records")
    return [{k: v for k, v in r.items() if v is not None} for r in records]


def _bad_variants(claim: dict) -> list[dict]:
    """Each a realistic mistake a claims system could send."""
    changes = [
        {"claim_amount": -5.0}, {"claim_amount": 0}, {"claim_amount": "12x"}, {"claim_amount": True},
        {"loss_date": "3000-01-01"}, {"loss_date": "2025-02-30"}, {"loss_date": "2025-03-01T10:00:00Z"},
        {"report_date": "yesterday"}, {"report_date": "2099-01-01T00:00:00Z"}, {"line_of_business": "marine"},
        {"witnesses": 2.5}, {"witnesses": -1}, {"claimant_age": 1e300}, {"police_report": "maybe"},
        {"claim_id": ""}, {"policy_id": "x" * 10_000}, {"colour": "red"}, {"loss_hour": 24},
    ]
    out = [dict(claim, **change) for change in changes]
    missing = dict(claim)
    del missing["policy_id"], missing["report_date"]
    return out + [missing, {}]


@pytest.fixture(scope="module")
def scorers(fitted_run, typed_claims, tmp_path_factory):
    """Two scorers on one bundle over two identically seeded stores."""
    home = tmp_path_factory.mktemp("paths")
    pair = []
    for name in ("fast", "frame"):
        store = ClaimStore(f"sqlite:///{home / name}.db")
        store.seed(typed_claims)
        pair.append(Scorer(fitted_run.bundle, "1", store, Deadlines()))
    return pair


def test_one_claim_answers_exactly_as_the_batch_path(scorers, fitted_run, typed_claims):
    fast, frame = scorers
    new = generate_claims(2_000, seed=21).sort_values("report_date").iloc[-120:].reset_index(drop=True)
    # Reuse known entities so history features are non-trivial: repeat claimants, shared payees.
    known = typed_claims.tail(500)
    new.loc[::3, "claimant_id"] = known["claimant_id"].iloc[:len(new.loc[::3])].to_numpy()
    new.loc[1::5, "payee_account"] = known["payee_account"].iloc[100:100 + len(new.loc[1::5])].to_numpy()
    new.loc[2::7, "provider_id"] = known["provider_id"].iloc[200:200 + len(new.loc[2::7])].to_numpy()
    claims = _as_json(new, fitted_run.bundle)
    decided = set()
    for claim in claims:
        for record in [claim] + _bad_variants(claim)[:3]:
            one = fast.score([copy.deepcopy(record)], explain=True, now=NOW).results[0]
            other = frame._score_many([copy.deepcopy(record)], explain=True, now=NOW).results[0]
            assert one == other, record
            _conforms(one)
            decided.add(one.get("decision"))
    for record in _bad_variants(claims[0]):
        one = fast.score([copy.deepcopy(record)], now=NOW).results[0]
        other = frame._score_many([copy.deepcopy(record)], explain=True, now=NOW).results[0]
        assert "errors" in one and one == other, record
    assert len(decided - {None}) >= 2  # the comparison covered more than one outcome
    batch = fast.score(claims[:20] + _bad_variants(claims[20])[:2], now=NOW)
    BatchResult.model_validate({"results": batch.results, "n_scored": 20, "n_errors": 2}, strict=True)
    for result in batch.results + fast.score(claims[30:40], explain=False, now=NOW).results:
        _conforms(result)


def _conforms(result: dict) -> None:
    """The service sends results as built, so each must be exactly its declared response model."""
    model = ClaimError if "errors" in result else Decision
    parsed = model.model_validate(result, strict=True)
    assert parsed.model_dump(mode="json") == result, "a key the response model does not declare, or a missing one"
