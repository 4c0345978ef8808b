"""Features: hand-computed values, no leakage from later claims, identical offline and online."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from features.builder import ENCODED_LABEL_SUFFIX, FeatureBuilder
from training.generate import add_code_column


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


def test_only_claims_reported_strictly_before_count(small):
    same_second = frame([row("a", "x", "2024-03-01 09:00", "2024-03-01"),
                         row("b", "x", "2024-03-01 09:00", "2024-03-01")])
    # Fitted on claims where the count varies: on these two alone it is constant, so left out.
    f = FeatureBuilder().fit(small).transform_frame(same_second)
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


# A 300-level dealer code (auto: its fraud rate), region read as its share of claims, a constant sales
# channel (left out), report dates without a time of day (no report hour).
CODED = {"passthrough_categorical": ("dealer_code", "channel"), "encodings": {"region": "frequency"},
         "field_precision": {"report_date": "day"}, "max_category_levels": 50}


@pytest.fixture(scope="module")
def coded_claims(typed_claims):
    return add_code_column(typed_claims, levels=300, seed=1).assign(channel="online")


@pytest.mark.parametrize("coded", [False, True], ids=["categories", "encoded-and-dropped"])
def test_validated_records_give_the_frame_pipeline_matrix_exactly(typed_claims, coded_claims, coded):
    training = coded_claims if coded else typed_claims
    builder = (FeatureBuilder(**CODED) if coded else FeatureBuilder()).fit(training)
    claims = training.sample(600, random_state=3).reset_index(drop=True)
    # Optional fields missing here and there, an unseen category, and a field no claim has.
    claims.loc[::7, "claimant_age"] = pd.NA
    claims.loc[::5, "customer_since"] = pd.NaT
    claims.loc[::11, "region"] = None
    claims.loc[3, "loss_type"] = "meteorite"
    claims = claims.drop(columns=["deductible"])
    if coded:
        assert builder.encoded_.keys() == {"dealer_code", "region"}
        assert {"channel", "report_hour"} <= builder.dropped_features_.keys()
        claims.loc[::13, "dealer_code"] = None
        claims.loc[4, "dealer_code"] = "D9999"  # a code no training claim had
        claims.loc[5, "region"] = "atlantis"
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


def test_features_needing_finer_dates_than_the_extract_has_are_left_out_and_said_why(small):
    # A loss date built from year and month only, a report date without a time of day.
    builder = FeatureBuilder(field_precision={"loss_date": "month", "report_date": "day"}).fit(small)
    dropped = builder.dropped_features_
    for name in ("report_hour", "loss_weekday", "policy_age_days", "report_delay_days", "customer_tenure_days"):
        assert name not in builder.feature_names_ and name in dropped
    assert dropped["policy_age_days"] == "loss_date is month-level; this feature needs week or better"
    assert dropped["report_hour"] == "report_date is day-level; this feature needs second or better"
    assert "claimant_claims_90d" in builder.feature_names_  # windows of 90 days: a day-level date will do
    assert "claim_amount" in builder.feature_names_

    weekly = FeatureBuilder(field_precision={"loss_date": "week", "report_date": "week"}).fit(small).feature_names_
    assert {"policy_age_days", "report_delay_days", "claimant_claims_90d"} <= set(weekly)
    assert "loss_weekday" not in weekly and "report_hour" not in weekly
    monthly = FeatureBuilder(field_precision={"report_date": "month"}).fit(small)
    assert not [s for s in monthly.specs_ if s.source == "history"]
    assert monthly.dropped_features_["days_since_claimant_last_claim"].startswith("report_date is month-level")
    assert "loss_weekday" in monthly.feature_names_ and "policy_age_days" in monthly.feature_names_


@pytest.mark.parametrize("precision", [{"claim_amount": "day"}, {"loss_date": "second"}, {"loss_date": "fortnight"}])
def test_a_precision_that_cannot_be_is_an_error_naming_the_field(small, precision):
    with pytest.raises(ValueError, match=next(iter(precision))):
        FeatureBuilder(field_precision=precision).fit(small)


def test_constant_and_empty_features_are_left_out_and_said_why(small):
    claims = small.assign(region="north", annual_premium=0.0, extra_channel="online", extra_score=np.nan)
    builder = FeatureBuilder(("extra_channel",), ("extra_score",)).fit(claims)
    dropped = builder.dropped_features_
    assert dropped["line_of_business"] == "constant in the training claims (every value 'auto')"
    assert dropped["region"] == "constant in the training claims (every value 'north')"
    assert dropped["annual_premium"] == "constant in the training claims (every value 0)"
    assert dropped["amount_to_premium"] == "missing in every training claim"  # x / 0
    assert dropped["extra_channel"] == "constant in the training claims (every value 'online')"
    assert dropped["extra_score"] == "no training claim has extra_score"
    assert not set(dropped) & set(builder.feature_names_)
    assert "loss_type" in builder.feature_names_ and "claim_amount" in builder.feature_names_
    # What a request may carry does not change: the fields seen and the extras passed through.
    assert {"line_of_business", "region", "annual_premium"} <= set(builder.fields_seen_)
    assert builder.passthrough_categorical == ("extra_channel",) and builder.passthrough_numeric == ("extra_score",)
    # One value plus missing ones is not constant: whether a value is given can matter.
    partly = claims.assign(region=["north", None, "north", None, "north"])
    assert "region" in FeatureBuilder().fit(partly).feature_names_


def test_claims_without_optional_fields_or_an_amount_still_build(typed_claims):
    required = ["claim_id", "policy_id", "claimant_id", "line_of_business", "loss_type", "policy_start_date",
                "loss_date", "report_date"]
    claims = typed_claims[required].iloc[:2_000]
    builder = FeatureBuilder().fit(claims)
    assert builder.fields_seen_ == required
    assert "claim_amount" not in builder.feature_names_ and "amount_to_typical_for_loss_type" not in \
        builder.feature_names_
    assert builder.dropped_features_["claim_amount"] == "no training claim has claim_amount"
    matrix = builder.transform(claims)
    history = {s.name: matrix[:, j] for j, s in enumerate(builder.specs_) if s.source == "history"}
    np.testing.assert_array_equal(builder.transform_records(_python_values(claims.iloc[:50]),
                                                            {k: v[:50] for k, v in history.items()}), matrix[:50])


def test_codes_with_more_levels_than_the_limit_are_read_as_their_fraud_rate(coded_claims):
    builder = FeatureBuilder(("dealer_code",), max_category_levels=50).fit(coded_claims)
    j = builder.feature_names_.index("dealer_code")
    assert "dealer_code" not in builder.categories_ and "loss_type" in builder.categories_
    assert j not in builder.categorical_indices_
    assert builder.feature_names_.index("loss_type") in builder.categorical_indices_
    assert builder.specs_[j].label == "dealer code" + ENCODED_LABEL_SUFFIX["target"]
    encoding = builder.encoded_["dealer_code"]
    assert encoding.unseen == pytest.approx(coded_claims["is_fraud"].mean())
    # New claims read the rates learned from all training claims; unseen and missing codes the overall rate.
    new = coded_claims.head(3).assign(dealer_code=["D0001", "never-seen", None])
    np.testing.assert_array_equal(builder.transform(new)[:, j],
                                  [encoding.values["D0001"], encoding.unseen, encoding.unseen])
    assert len(pickle.dumps(builder)) < 40_000  # a rate per code travels inside every bundle

    def kept_as_category(**settings) -> bool:
        return "dealer_code" in FeatureBuilder(("dealer_code",), **settings).fit(coded_claims).categories_

    assert kept_as_category()  # no limit given: every categorical stays a category
    assert kept_as_category(max_category_levels=300)  # 300 levels is not more than 300
    assert kept_as_category(max_category_levels=50, encodings={"dealer_code": "category"})
    assert not kept_as_category(encodings={"dealer_code": "target"})


def test_a_training_claims_own_label_never_reaches_its_out_of_fold_code_rate(coded_claims):
    claims = coded_claims.iloc[:6_000].copy()
    fraud = np.flatnonzero(claims["is_fraud"].to_numpy())[0]
    claims.loc[fraud, "dealer_code"] = "ONLY-HERE"  # a code on one claim, a fraud
    builder = FeatureBuilder(**CODED).fit(claims)
    j = builder.feature_names_.index("dealer_code")
    encoding = builder.encoded_["dealer_code"]
    full = builder.transform(claims)
    out_of_fold = builder.out_of_fold(claims, full)
    # Read from all training claims, its one fraud lifts the code well above the overall rate ...
    assert full[fraud, j] == encoding.values["ONLY-HERE"] > 2 * encoding.unseen
    # ... out of fold, the other folds never saw the code: the overall rate of those folds.
    assert out_of_fold[fraud, j] == pytest.approx(encoding.unseen, abs=0.002)
    # In sample, the rates pick out the training frauds better than they can on claims they never saw.
    y = claims["is_fraud"].to_numpy()
    assert roc_auc_score(y, full[:, j]) > roc_auc_score(y, out_of_fold[:, j]) + 0.03
    # Only target-encoded columns change; a frequency (region) needs no label and stays as it is.
    np.testing.assert_array_equal(np.delete(out_of_fold, j, axis=1), np.delete(full, j, axis=1))


def test_settings_that_name_no_categorical_feature_or_encoding_are_errors(coded_claims):
    with pytest.raises(ValueError, match="'claim_amount' is not a categorical feature"):
        FeatureBuilder(encodings={"claim_amount": "target"}).fit(coded_claims)
    with pytest.raises(ValueError, match="region must be one of auto, category, target, frequency"):
        FeatureBuilder(encodings={"region": "onehot"}).fit(coded_claims)
    with pytest.raises(ValueError, match="needs the is_fraud label"):
        FeatureBuilder(("dealer_code",), max_category_levels=50).fit(coded_claims.drop(columns=["is_fraud"]))


def test_a_builder_pickled_before_encodings_and_dropped_features_still_transforms(small):
    builder = FeatureBuilder().fit(small)
    older = pickle.loads(pickle.dumps(builder))
    for name in ("encoded_", "dropped_features_", "field_precision", "encodings", "max_category_levels",
                 "target_smoothing", "random_state"):
        delattr(older, name)
    np.testing.assert_array_equal(older.transform(small), builder.transform(small))
    record = _python_values(small.iloc[[1]])[0]
    np.testing.assert_array_equal(older.transform_record(record), builder.transform_record(record))
    assert older.categorical_indices_ == builder.categorical_indices_


def test_code_rates_are_scikit_learns_target_encoding_in_and_out_of_fold(coded_claims):
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import TargetEncoder

    claims = coded_claims.iloc[:6_000]
    builder = FeatureBuilder(("dealer_code",), encodings={"dealer_code": "target"}, target_smoothing=20.0,
                             random_state=4).fit(claims)
    reference = TargetEncoder(target_type="binary", smooth=20.0, cv=StratifiedKFold(5, shuffle=True, random_state=4))
    expected = reference.fit_transform(claims[["dealer_code"]].to_numpy(dtype=object), claims["is_fraud"])[:, 0]
    encoding = builder.encoded_["dealer_code"]
    assert encoding.values == pytest.approx(dict(zip(reference.categories_[0], reference.encodings_[0])), rel=1e-12)
    j = builder.feature_names_.index("dealer_code")
    np.testing.assert_allclose(builder.out_of_fold(claims, builder.transform(claims))[:, j], expected, rtol=1e-12)


def test_the_report_hour_is_the_same_on_every_path_for_claims_reported_exactly_on_the_hour(small):
    # Generated report times are never exactly on the hour, and the hand-checked claims go through
    # the frame only; yet read as a float day, 10:00 can come out as 9.999 h and floor to 9. Each
    # hour of a year of days, a second before each hour (xx:59:59.9: fractions are dropped) and
    # midnight: the one-claim path, the record batch and the frame must all give the clock's hour.
    builder = FeatureBuilder().fit(small)
    days = pd.date_range("2024-01-01", "2024-12-31", freq="D")
    times = [day + pd.Timedelta(hours=h) for day in days for h in range(24)]
    times += [day + pd.Timedelta(hours=h, minutes=59, seconds=59, milliseconds=900) for day in days[:40]
              for h in range(24)]
    claims = frame([row(f"c{i}", "x", "2024-01-01", "2024-01-01") for i in range(len(times))])
    claims["report_date"] = pd.Series(times).astype("datetime64[s]")
    expected = np.array([t.hour for t in times], dtype=np.float64)
    column = builder.feature_names_.index("report_hour")
    history = {s.name: np.zeros(len(claims)) for s in builder.specs_ if s.source == "history"}
    records = [dict(r, report_date=t.to_pydatetime()) for r, t in zip(_python_values(claims), times)]
    assert records[-1]["report_date"].microsecond == 900_000  # the one-claim path is handed the fraction
    np.testing.assert_array_equal(builder.transform(claims, history_values=history)[:, column], expected)
    np.testing.assert_array_equal(builder.transform_records(records, history)[:, column], expected)
    one_by_one = [builder.transform_record(r, {n: 0.0 for n in history})[0, column] for r in records]
    np.testing.assert_array_equal(np.array(one_by_one), expected)


def test_history_counted_elsewhere_is_read_not_recounted(fitted_run, typed_claims):
    """Claims carrying their history features counted over a bigger book (Spark training samples one)
    keep those values: counting within the sample would undercount."""
    from features.builder import PRECOUNTED

    builder = fitted_run.bundle.builder
    whole = builder.history_values(typed_claims)
    sample = typed_claims.iloc[::10].copy()
    recounted = builder.transform(sample)
    for name, values in whole.items():
        sample[PRECOUNTED + name] = values[::10]
    kept = builder.transform(sample)
    columns = [j for j, spec in enumerate(builder.specs_) if spec.source == "history"]
    expected = np.column_stack([whole[builder.specs_[j].name][::10] for j in columns])
    np.testing.assert_array_equal(kept[:, columns], expected)
    assert not np.array_equal(recounted[:, columns], expected, equal_nan=True)
    other = [j for j in range(kept.shape[1]) if j not in columns]
    np.testing.assert_array_equal(kept[:, other], recounted[:, other])
