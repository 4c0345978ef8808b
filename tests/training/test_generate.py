"""The synthetic claims: deterministic, realistic in difficulty, with the mechanisms we claim."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from training.generate import generate_claims, write_claims

TEXT = ["claim_id", "policy_id", "claimant_id", "line_of_business", "loss_type", "region", "payee_account",
        "claimant_phone", "claimant_address", "provider_id"]


@pytest.fixture(scope="module")
def claims():
    return generate_claims(100_000, seed=11)


def test_same_seed_same_claims_other_seed_other_claims():
    pd.testing.assert_frame_equal(generate_claims(3_000, seed=5), generate_claims(3_000, seed=5))
    assert not generate_claims(3_000, seed=6)["claim_amount"].equals(generate_claims(3_000, seed=5)["claim_amount"])


def test_columns_and_dtypes(claims):
    for col in TEXT:
        assert pd.api.types.is_string_dtype(claims[col]) and not pd.api.types.is_object_dtype(claims[col]), col
    for col in ("policy_start_date", "loss_date", "report_date", "customer_since"):
        assert pd.api.types.is_datetime64_any_dtype(claims[col]), col
    assert str(claims["loss_hour"].dtype) == "Int64" and str(claims["police_report"].dtype) == "boolean"
    assert claims["loss_hour"].isna().any() and claims["police_report"].isna().any()
    assert claims["is_fraud"].dtype == bool and claims["paid_as_filed"].dtype == bool


def test_record_invariants(claims):
    assert claims["claim_id"].is_unique
    assert (claims["report_date"] >= claims["loss_date"]).all()
    assert (claims["claim_amount"] > 0).all()
    assert (claims["customer_since"] <= claims["policy_start_date"]).all()
    assert not (claims["paid_as_filed"] & claims["is_fraud"]).any()
    assert claims["report_date"].is_monotonic_increasing
    assert (claims["report_date"].max() - claims["report_date"].min()).days >= 730
    assert set(claims["line_of_business"]) == {"auto", "property"}
    before = (claims["loss_date"] < claims["policy_start_date"]).mean()
    assert 0 < before < 0.01  # back-dated cover exists, and is rare


def test_realistic_difficulty(claims):
    assert 0.01 <= claims["is_fraud"].mean() <= 0.05
    assert 0.60 <= claims["paid_as_filed"].mean() <= 0.80
    oracle = roc_auc_score(claims["is_fraud"], claims["true_fraud_prob"])
    assert 0.85 <= oracle <= 0.95
    # Straight-through processing is possible for a real share of claims.
    assert (claims["true_paid_as_filed_prob"] >= 0.99).mean() > 0.03


def test_labels_follow_their_probabilities(claims):
    assert claims["is_fraud"].mean() == pytest.approx(claims["true_fraud_prob"].mean(), abs=0.003)
    assert claims["paid_as_filed"].mean() == pytest.approx(claims["true_paid_as_filed_prob"].mean(), abs=0.005)


def test_entities_recur_and_rings_share_contacts(claims):
    assert claims["claimant_id"].duplicated().any()
    per_account = claims.groupby("payee_account")["claimant_id"].nunique()
    shared = per_account[per_account > 1].index
    assert len(shared) > 10
    on_shared = claims["payee_account"].isin(shared)
    assert claims.loc[on_shared, "is_fraud"].mean() > 3 * claims.loc[~on_shared, "is_fraud"].mean()


def test_fraud_mechanisms_raise_fraud_rates(claims):
    delay = (claims["report_date"] - claims["loss_date"]).dt.days
    age = (claims["loss_date"] - claims["policy_start_date"]).dt.days
    rate = lambda mask: claims.loc[mask, "is_fraud"].mean()  # noqa: E731
    assert rate(delay > 14) > 2 * rate(delay <= 2)
    assert rate(age < 30) > 2 * rate(age > 365)
    typical = claims.groupby("loss_type")["claim_amount"].transform("median")
    assert rate(claims["claim_amount"] > 3 * typical) > 2 * rate(claims["claim_amount"] < typical)


def test_injected_anomalies(claims):
    injected = claims["is_injected_anomaly"]
    assert injected.mean() == pytest.approx(0.005, abs=0.001)
    typical = claims.groupby("loss_type")["claim_amount"].transform("median")
    payouts = injected & (claims["claim_amount"] > 10 * typical)
    absurd = injected & (claims["vehicles_involved"] >= 6)
    assert (payouts | absurd)[injected].all()
    assert payouts.sum() > 0 and absurd.sum() > 0


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_write_claims_round_trips(tmp_path, suffix):
    frame = generate_claims(500, seed=2)
    path = tmp_path / f"claims{suffix}"
    write_claims(frame, path)
    back = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path, parse_dates=["report_date"])
    assert back["claim_id"].tolist() == frame["claim_id"].tolist()
    np.testing.assert_allclose(back["claim_amount"], frame["claim_amount"])
    assert (pd.to_datetime(back["report_date"]) == frame["report_date"]).all()


def test_write_claims_rejects_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match="unknown file type '.xlsx'"):
        write_claims(generate_claims(200, seed=1), tmp_path / "claims.xlsx")
