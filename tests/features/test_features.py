"""Features: hand-computed values, no leakage from later claims, identical offline and online."""

import numpy as np
import pandas as pd
import pytest

from features.builder import FeatureBuilder


def frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for col in ("policy_start_date", "loss_date", "report_date", "customer_since"):
        if col in df:
            df[col] = pd.to_datetime(df[col]).astype("datetime64[s]")
    return df


def row(claim_id, claimant, reported, loss, amount=1000.0, loss_type="theft", **extra):
    base = {"claim_id": claim_id, "policy_id": extra.pop("policy", "P-" + claimant), "claimant_id": claimant,
            "line_of_business": "auto", "loss_type": loss_type, "policy_start_date": "2024-01-01",
            "loss_date": loss, "report_date": reported, "claim_amount": amount, "annual_premium": 500.0,
            "coverage_limit": 20000.0, "payee_account": extra.pop("account", "acct-" + claimant)}
    base.update(extra)
    return base


@pytest.fixture
def small():
    return frame([
        row("a", "x", "2024-02-02 10:00", "2024-02-01", 100.0, account="shared"),
        row("b", "x", "2024-03-03 12:00", "2024-03-01", 300.0, account="shared"),
        row("c", "y", "2024-03-02 00:00", "2024-03-01", 50.0, loss_type="glass", account="shared"),
        row("d", "z", "2024-06-30 00:00", "2024-06-20", 200.0, customer_since="2020-06-20", claimant_age=40),
        row("e", "x", "2025-02-20 08:00", "2025-02-19", 900.0, account="shared"),
    ])


def test_claim_level_features_match_hand_computed_values(small):
    builder = FeatureBuilder().fit(small)
    f = builder.transform_frame(small).set_index(small["claim_id"])
    assert f.loc["a", "policy_age_days"] == 31  # 2024-01-01 -> 2024-02-01
    assert f.loc["a", "report_delay_days"] == pytest.approx(1 + 10 / 24)
    assert f.loc["a", "report_hour"] == 10 and f.loc["b", "report_hour"] == 12
    assert f.loc["a", "loss_weekday"] == 3  # 2024-02-01 was a Thursday
    assert f.loc["a", "amount_to_premium"] == pytest.approx(0.2)
    assert f.loc["b", "amount_to_coverage_limit"] == pytest.approx(300 / 20000)
    # theft amounts 100, 300, 200, 900: median 250
    assert f.loc["b", "amount_to_typical_for_loss_type"] == pytest.approx(300 / 250)
    assert f.loc["c", "amount_to_typical_for_loss_type"] == pytest.approx(1.0)
    assert f.loc["d", "customer_tenure_days"] == 1461  # 2020-06-20 -> 2024-06-20, one leap day
    assert f.loc["d", "claimant_age"] == 40 and np.isnan(f.loc["a", "claimant_age"])
    assert str(f.loc["c", "loss_type"]) == "glass"


def test_history_features_match_hand_computed_values(small):
    f = FeatureBuilder().fit(small).transform_frame(small).set_index(small["claim_id"])
    assert f.loc["a", "claimant_claims_365d"] == 0 and np.isnan(f.loc["a", "days_since_claimant_last_claim"])
    assert f.loc["b", "claimant_claims_90d"] == 1
    assert f.loc["b", "days_since_claimant_last_claim"] == pytest.approx(30 + 2 / 24)
    # e is 353 days after b and 384 after a: only b is inside the 365-day window, none in 90.
    assert f.loc["e", "claimant_claims_365d"] == 1 and f.loc["e", "claimant_claims_90d"] == 0
    assert f.loc["b", "policy_claims_90d"] == 1
    # "shared" account: before b (Mar 3 12:00) it was used by x (a) and y (c): one *other* claimant.
    assert f.loc["a", "payee_account_other_claimants"] == 0
    assert f.loc["b", "payee_account_other_claimants"] == 1
    assert f.loc["c", "payee_account_other_claimants"] == 1
    assert f.loc["d", "payee_account_other_claimants"] == 0


def test_only_claims_reported_strictly_before_count():
    same_second = frame([row("a", "x", "2024-03-01 09:00", "2024-03-01"),
                         row("b", "x", "2024-03-01 09:00", "2024-03-01")])
    f = FeatureBuilder().fit(same_second).transform_frame(same_second)
    assert f["claimant_claims_90d"].tolist() == [0, 0]


def test_features_need_their_fields_and_are_left_out_otherwise(small):
    partial = small.drop(columns=["annual_premium", "payee_account"])
    names = FeatureBuilder().fit(partial).feature_names_
    assert "amount_to_premium" not in names and "payee_account_other_claimants" not in names
    assert "amount_to_coverage_limit" in names and "claimant_claims_90d" in names


def test_unseen_category_is_missing_not_an_error(small):
    builder = FeatureBuilder().fit(small)
    new = small.head(1).assign(loss_type="meteorite", claim_id="new")
    f = builder.transform_frame(new, history=small)
    assert pd.isna(f["loss_type"].iloc[0])
    assert np.isnan(f["amount_to_typical_for_loss_type"].iloc[0])


def test_changing_or_removing_later_claims_never_changes_earlier_features(typed_claims):
    claims = typed_claims
    builder = FeatureBuilder().fit(claims)
    full = builder.transform(claims)
    cutoff = claims["report_date"].iloc[len(claims) // 2]
    earlier = (claims["report_date"] < cutoff).to_numpy()

    truncated = claims.loc[earlier]
    np.testing.assert_array_equal(builder.transform(truncated), full[earlier])

    rng = np.random.default_rng(0)
    altered = claims.copy()
    later = ~earlier
    # Later claims now reuse earlier claimants, accounts and phones and change their amounts.
    donors = rng.choice(np.flatnonzero(earlier), size=later.sum())
    for col in ("claimant_id", "policy_id", "payee_account", "claimant_phone", "claimant_address", "provider_id"):
        altered.loc[later, col] = claims[col].to_numpy()[donors]
    altered.loc[later, "claim_amount"] = altered.loc[later, "claim_amount"] * 7
    np.testing.assert_array_equal(builder.transform(altered)[earlier], full[earlier])


def related_history(history: pd.DataFrame, claim: pd.Series) -> pd.DataFrame:
    """What a claim store returns: every stored claim sharing one of the claim's entities."""
    shares = np.zeros(len(history), bool)
    for col in ("claimant_id", "policy_id", "payee_account", "claimant_phone", "claimant_address", "provider_id"):
        if col in history and pd.notna(claim[col]):
            shares |= (history[col] == claim[col]).to_numpy(dtype=bool, na_value=False)
    return history.loc[shares]


def test_one_claim_online_equals_the_offline_batch_exactly(typed_claims):
    claims = typed_claims
    builder = FeatureBuilder().fit(claims)
    offline = builder.transform(claims)
    rng = np.random.default_rng(1)
    picks = np.concatenate([rng.choice(len(claims), 200, replace=False),
                            # claims whose claimant has history, so the history path is exercised
                            np.flatnonzero(claims["claimant_id"].duplicated().to_numpy())[:100]])
    for i in picks:
        one = claims.iloc[[i]]
        # The store holds everything, later claims included; only earlier ones may count.
        online = builder.transform(one, history=related_history(claims, claims.iloc[i]))
        np.testing.assert_array_equal(online[0], offline[i], err_msg=f"claim {claims['claim_id'].iloc[i]}")


def _python_values(claims: pd.DataFrame) -> list[dict]:
    """Typed claim rows as the service holds them after validation: Python values, missing ones absent."""
    out = []
    for _, claim in claims.iterrows():
        record = {}
        for name, value in claim.items():
            if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
                continue
            record[name] = value.to_pydatetime() if isinstance(value, pd.Timestamp) else \
                value.item() if isinstance(value, np.generic) else value
        out.append(record)
    return out


def test_validated_records_give_the_frame_pipeline_matrix_exactly(typed_claims):
    builder = FeatureBuilder().fit(typed_claims)
    claims = typed_claims.sample(600, random_state=3).reset_index(drop=True)
    # Optional fields missing here and there, an unseen category, and a field no claim has.
    claims.loc[::7, "claimant_age"] = pd.NA
    claims.loc[::5, "customer_since"] = pd.NaT
    claims.loc[::11, "region"] = None
    claims.loc[3, "loss_type"] = "meteorite"
    claims = claims.drop(columns=["deductible"])
    names = [s.name for s in builder.specs_ if s.source == "history"]
    history = {name: np.arange(len(claims), dtype=np.float64) + k for k, name in enumerate(names)}
    frame_matrix = builder.transform(claims, history_values=history)
    record_matrix = builder.transform_records(_python_values(claims), history)
    np.testing.assert_array_equal(record_matrix, frame_matrix)
    assert np.isnan(record_matrix[3, builder.feature_names_.index("loss_type")])
    for i in (0, 1, 2):  # and each row as transform_record gives it alone
        record = _python_values(claims.iloc[[i]])[0]
        np.testing.assert_array_equal(builder.transform_record(record, {n: v[i] for n, v in history.items()})[0],
                                      frame_matrix[i])
