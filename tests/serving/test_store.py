"""The claim store: history for exactly-equal online features, claims kept once, decisions kept all."""

import numpy as np
import pytest

from features.builder import FeatureBuilder
from serving.store import ClaimStore


@pytest.fixture
def store(store_url):
    return ClaimStore(store_url)


def decision(label: str) -> dict:
    return {"decision": label, "scores": {"fraud_probability": 0.1, "approval_probability": 0.8,
                                          "anomaly_score": 0.3}}


def test_features_from_store_history_equal_the_offline_pipeline(store, typed_claims):
    claims = typed_claims.head(4000)
    builder = FeatureBuilder().fit(claims)
    offline = builder.transform(claims)
    assert store.seed(claims) == len(claims)
    for i in list(range(0, 4000, 97)) + list(np.flatnonzero(claims["claimant_id"].duplicated().to_numpy())[:20]):
        one = claims.iloc[[i]]
        online = builder.transform(one, history=store.history(one))
        np.testing.assert_array_equal(online[0], offline[i])


def test_history_returns_only_claims_sharing_an_entity(store, typed_claims):
    claims = typed_claims.head(2000)
    store.seed(claims)
    one = claims.iloc[[1500]]
    history = store.history(one)
    shares = np.zeros(len(history), bool)
    for col in ("claimant_id", "policy_id", "payee_account", "claimant_phone", "claimant_address", "provider_id"):
        shares |= (history[col] == one[col].iloc[0]).to_numpy(dtype=bool, na_value=False)
    assert shares.all() and one["claim_id"].iloc[0] in set(history["claim_id"])
    assert str(history["report_date"].dtype).startswith("datetime64")


def test_rescoring_keeps_one_claim_and_every_decision(store, typed_claims):
    claims = typed_claims.head(50)
    store.seed(claims.head(40))
    again = claims.iloc[[10]]
    store.record(again, [decision("STANDARD_REVIEW")], "3")
    store.record(again.assign(claim_amount=again["claim_amount"] * 2), [decision("SIU_REFERRAL")], "3")
    assert store.count_claims() == 40
    kept = store.decisions_for(again["claim_id"].iloc[0])
    assert [d["decision"] for d in kept] == ["STANDARD_REVIEW", "SIU_REFERRAL"]
    assert kept[1]["response"]["decision"] == "SIU_REFERRAL" and kept[0]["model_version"] == "3"
    stored = store.history(again)
    row = stored.loc[stored["claim_id"] == again["claim_id"].iloc[0]]
    assert len(row) == 1 and row["claim_amount"].iloc[0] == pytest.approx(again["claim_amount"].iloc[0] * 2)


def test_seeding_twice_adds_nothing(store, typed_claims):
    claims = typed_claims.head(100)
    assert store.seed(claims) == 100
    assert store.seed(claims) == 0
    assert store.count_claims() == 100


def test_a_failed_record_leaves_nothing_half_written(store, typed_claims):
    claims = typed_claims.head(5)
    store.seed(claims.head(3))
    with pytest.raises(Exception):
        store.record(claims.iloc[[4]], [{"decision": None, "scores": {}}], "1")  # no scores: must not commit
    assert store.count_claims() == 3
    assert store.decisions_for(claims["claim_id"].iloc[4]) == []
