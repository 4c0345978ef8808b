"""The Spark history features equal the pandas ones bit for bit, on hand-made edge cases and a
generated book."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bulk.spark_history import history_columns
from features.history import history_feature_requirements, history_features
from features.validation import validate_claims
from training.generate import generate_claims

NAMES = list(history_feature_requirements())
COLUMNS = ["claim_id", "report_date", "loss_date", "claimant_id", "policy_id", "provider_id",
           "payee_account", "claimant_phone", "claimant_address"]
T0 = pd.Timestamp("2024-01-01 08:00:00")


def _at(days: float = 0, seconds: float = 0) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=days) + pd.Timedelta(seconds=seconds)


def _claim(claim_id, report, loss="default", claimant="A", policy="PA", provider="PR1", payee="PAY-A",
           phone="PH1", address="AD-A"):
    # Losses a week before the report by default, so taking the wrong date first changes counts.
    loss = report - pd.Timedelta(days=7) if isinstance(loss, str) and report is not pd.NaT else loss
    return dict(zip(COLUMNS, [claim_id, report, loss, claimant, policy, provider, payee, phone, address]))


def _hand_made() -> pd.DataFrame:
    rows = [
        # Claimant A: exactly 90 and 365 days apart, one second either side, a same-second tie.
        _claim("a1", _at()),
        _claim("a2", _at(90)),
        _claim("a3", _at(90, 1)),
        _claim("a4", _at(365), phone="PH2"),   # A changes phone
        _claim("a5", _at(365, 1), phone="PH2"),
        _claim("a6", _at(365, 1.6), phone="PH2"),  # same whole second as a5
        _claim("a7", _at(455, -1), phone="PH2"),  # a4 is 90 days less a second back: inside
        # No report date: the loss date places it; neither date: it counts for nobody.
        _claim("a8", pd.NaT, loss=_at(100)),
        _claim("a9", pd.NaT, loss=pd.NaT),
        # B and C share A's payee; B reuses it; C first uses it in the same second as D's claim.
        _claim("b1", _at(10), claimant="B", policy="PB", payee="PAY-A", phone="PH1", address="AD-S"),
        _claim("b2", _at(20), claimant="B", policy="PB", payee="PAY-A", phone="PH9", address="AD-S"),
        _claim("c1", _at(30), claimant="C", policy="PC", payee="PAY-A", phone="PH1", address="AD-S"),
        _claim("d1", _at(30), claimant="D", policy="PD", payee="PAY-A", phone=None, address="AD-S"),
        _claim("d2", _at(31), claimant="D", policy="PD", payee="PAY-A", phone=None, address="AD-S"),
        # No claimant: the policy stands in as the person (and shares a policy with A).
        _claim("e1", _at(40), claimant=None, policy="PA", provider=None, payee="PAY-A", address="AD-S"),
        _claim("e2", _at(41), claimant=None, policy="PE", provider=None, payee=None, address="AD-S"),
        _claim("f1", _at(400), claimant="F", policy=None, provider=None, payee="PAY-A", phone="PH2"),
    ]
    return pd.DataFrame(rows).astype({c: "str" for c in COLUMNS if c not in ("report_date", "loss_date")})


@pytest.fixture(scope="module")
def generated() -> pd.DataFrame:
    claims = validate_claims(generate_claims(5000, seed=3), require_labels=True).claims
    return claims[COLUMNS].reset_index(drop=True)


def _assert_equal_to_pandas(spark, claims: pd.DataFrame, names: list[str] = NAMES) -> dict[str, np.ndarray]:
    expected = history_features(claims.reset_index(drop=True), None, names)
    result = history_columns(spark.createDataFrame(claims), names)
    assert result.columns == [*claims.columns, *names]
    assert all(result.schema[n].dataType.typeName() == "double" for n in names)
    got = result.toPandas().set_index("claim_id").loc[claims["claim_id"]]
    for name in names:
        np.testing.assert_array_equal(got[name].to_numpy(dtype=np.float64), expected[name], err_msg=name)
    return expected


def test_edge_cases_equal_pandas_and_mean_what_they_say(spark):
    claims = _hand_made()
    expected = _assert_equal_to_pandas(spark, claims)
    at = {cid: i for i, cid in enumerate(claims["claim_id"])}

    def value(name, cid):
        return expected[name][at[cid]]

    # Exactly 90 / 365 days earlier counts; one second more does not; same second never does.
    assert value("claimant_claims_90d", "a2") == 1 and value("claimant_claims_90d", "a3") == 1
    assert value("claimant_claims_365d", "a4") == 4 and value("claimant_claims_365d", "a5") == 4
    assert value("claimant_claims_365d", "a6") == 4 and value("claimant_claims_90d", "a7") == 3
    assert np.isnan(value("claimant_claims_90d", "a9")) and np.isnan(value("payee_account_other_claimants", "a9"))
    # Policy PA: a1-a3 and a8 (by loss date) before e1; a claimant reusing the payee is not "other".
    assert value("policy_claims_90d", "e1") == 1 and value("policy_claims_365d", "a4") == 5
    assert value("payee_account_other_claimants", "b2") == 1
    assert value("payee_account_other_claimants", "d1") == 2 and value("payee_account_other_claimants", "d2") == 3
    assert value("phone_other_claimants", "f1") == 1 and np.isnan(value("phone_other_claimants", "d1"))


def test_timestamps_arrive_in_spark_as_the_same_utc_instants(spark, generated):
    from pyspark.sql import functions as F

    frame = spark.createDataFrame(generated[["claim_id", "report_date"]])
    got = frame.select("claim_id", F.unix_seconds("report_date").alias("s")).toPandas().set_index("claim_id")
    want = (generated["report_date"] - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    np.testing.assert_array_equal(got.loc[generated["claim_id"], "s"].to_numpy(), want.to_numpy())


def test_generated_book_equals_pandas(spark, generated):
    expected = _assert_equal_to_pandas(spark, generated)
    assert np.nanmax(expected["payee_account_other_claimants"]) >= 1  # rings share payees: not all zero


def test_absent_entity_columns_give_nulls_and_unrequested_names_are_not_added(spark, generated):
    claims = generated.drop(columns=["provider_id", "claimant_phone"])
    names = ["provider_claims_90d", "phone_other_claimants", "claimant_claims_365d", "address_other_claimants"]
    expected = _assert_equal_to_pandas(spark, claims, names)
    assert np.isnan(expected["provider_claims_90d"]).all() and np.isnan(expected["phone_other_claimants"]).all()


def test_without_dates_or_claimants_the_policy_and_nulls_stand_in(spark):
    claims = _hand_made()
    _assert_equal_to_pandas(spark, claims.drop(columns=["claimant_id"]))
    _assert_equal_to_pandas(spark, claims.drop(columns=["report_date"]))
    _assert_equal_to_pandas(spark, claims.drop(columns=["report_date", "loss_date"]), ["policy_claims_90d"])


def test_unknown_feature_name_is_refused(spark):
    with pytest.raises(ValueError, match="not history features: claimant_claims_30d"):
        history_columns(spark.createDataFrame(_hand_made()), ["claimant_claims_30d"])
