"""The synthetic claims: deterministic, realistic in difficulty, with the mechanisms we claim."""

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.metrics import roc_auc_score

from training.generate import generate_claims, write_claims

# What links two claims to the same people: the graph features' links, provider aside (a busy shop is no tie).
LINKS = ["claimant_id", "policy_id", "payee_account", "claimant_phone", "claimant_address"]
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
    assert str(claims["ring_id"].dtype) == "Int64" and claims["fraud_confirmed_at"].dtype == "datetime64[s]"


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
    in_ring = claims["ring_id"].notna()
    on_shared = claims["payee_account"].isin(shared)
    assert claims.loc[on_shared & in_ring, "is_fraud"].mean() > 3 * claims.loc[~on_shared, "is_fraud"].mean()
    assert claims.loc[on_shared & ~in_ring, "is_fraud"].mean() < 1.5 * claims.loc[~on_shared, "is_fraud"].mean()


def claim_components(frame: pd.DataFrame, fields: list[str] = LINKS) -> np.ndarray:
    """Per claim, its connected component when claims sharing any value of `fields` are linked."""
    n = len(frame)
    codes, offset = [], n
    for field in fields:
        code, uniques = pd.factorize(frame[field])
        codes.append(np.where(code >= 0, code + offset, np.arange(n)))
        offset += len(uniques)
    rows = np.tile(np.arange(n), len(fields))
    graph = coo_matrix((np.ones(len(rows)), (rows, np.concatenate(codes))), shape=(offset, offset))
    return connected_components(graph, directed=False)[1][:n]


def ring_shapes(claims: pd.DataFrame) -> pd.DataFrame:
    """Per ring: members, the most members any one identity reaches (and its field), and whether its claims
    form one component of the whole book that holds no other claim."""
    component = pd.Series(claim_components(claims), index=claims.index)
    component_size = component.map(component.value_counts())
    rows = []
    for ring, group in claims[claims["ring_id"].notna()].groupby("ring_id"):
        reach = {f: group.groupby(f)["claimant_id"].nunique().max() for f in LINKS[2:]}
        widest = max(reach, key=reach.get)
        alone = component[group.index].nunique() == 1 and component_size[group.index[0]] == len(group)
        rows.append({"ring": ring, "members": group["claimant_id"].nunique(), "widest_identity": reach[widest],
                     "widest_field": widest, "connected_alone": alone})
    return pd.DataFrame(rows)


def test_chain_rings_are_connected_though_no_identity_reaches_three_members(claims):
    shapes = ring_shapes(claims)
    chains = shapes[(shapes["widest_identity"] == 2) & (shapes["members"] >= 4)]
    assert len(chains) >= 5, shapes
    assert chains["connected_alone"].all(), chains


def test_star_rings_gather_most_members_round_one_hub(claims):
    shapes = ring_shapes(claims)
    stars = shapes[shapes["widest_identity"] >= 0.6 * shapes["members"]]
    assert len(stars) >= 5 and len(stars) + (shapes["widest_identity"] == 2).sum() == len(shapes), shapes
    assert set(stars["widest_field"]) == {"payee_account", "claimant_address"}


def test_rings_work_for_months_and_recruit_over_time(claims):
    ring = claims[claims["ring_id"].notna()]
    months = ring.groupby("ring_id")["loss_date"].agg(lambda d: (d.max() - d.min()).days)
    assert 60 <= months.median() <= 365 and months.max() > 200
    # Members join one after another: who took out cover later also claims later (rank correlation).
    member = ring.groupby(["ring_id", "claimant_id"]).agg(cover=("policy_start_date", "min"), first=("loss_date", "min"))
    joined_late_claims_late = member.groupby("ring_id").apply(lambda m: m["cover"].rank().corr(m["first"].rank()))
    assert joined_late_claims_late.mean() > 0.25
    assert ring.groupby("claimant_id").size().max() > 1
    sizes = ring.groupby("ring_id")["claimant_id"].nunique()
    assert sizes.min() >= 4 and sizes.max() <= 16 and sizes.nunique() > 5
    assert 0.005 <= len(ring) / len(claims) <= 0.015


def test_colluding_provider_serves_several_rings_among_many_ordinary_claims(claims):
    per_provider = claims.assign(ordinary=claims["ring_id"].isna()).groupby("provider_id").agg(
        rings=("ring_id", "nunique"), ordinary=("ordinary", "sum"), claims=("claim_id", "size"))
    colluders = per_provider[per_provider["rings"] >= 5]
    assert 1 <= len(colluders) <= 3
    assert (colluders["ordinary"] > 2 * (colluders["claims"] - colluders["ordinary"])).all()
    through = claims["provider_id"].isin(colluders.index)
    assert through[claims["ring_id"].notna()].mean() > 0.6
    # No ring has a provider of its own: every provider a ring used has ordinary claims too.
    assert (per_provider.loc[per_provider["rings"] > 0, "ordinary"] > 10).all()


def test_families_share_an_address_and_no_more_fraud(claims):
    ordinary = claims[claims["ring_id"].isna()]
    per_address = ordinary.groupby("claimant_address")["claimant_id"].nunique()
    families = per_address[per_address >= 2]
    assert families.max() <= 5 and len(families) > 100
    in_family = ordinary["claimant_address"].isin(families.index)
    assert 0.02 <= ordinary.loc[in_family, "claimant_id"].nunique() / claims["claimant_id"].nunique() <= 0.08
    landline = ordinary[in_family].groupby("claimant_address")["claimant_phone"].nunique() == 1
    assert 0.3 <= landline.mean() <= 0.9
    assert_no_more_fraud_than_the_book(ordinary[in_family], claims)


def test_fleets_share_an_account_over_the_whole_span_and_no_more_fraud(claims):
    ordinary = claims[claims["ring_id"].isna()]
    per_account = ordinary.groupby("payee_account")["claimant_id"].nunique()
    fleets = per_account[per_account >= 5].index
    assert len(fleets) >= 2
    fleet = ordinary[ordinary["payee_account"].isin(fleets)]
    assert (fleet["line_of_business"] == "auto").all()
    assert fleet.groupby("payee_account")["report_date"].agg(lambda d: (d.max() - d.min()).days).min() > 365
    assert_no_more_fraud_than_the_book(fleet, claims)


def assert_no_more_fraud_than_the_book(group: pd.DataFrame, claims: pd.DataFrame) -> None:
    """Expected fraud (the true probabilities) no higher than the book's; the realised rate no higher than
    sampling error allows (two standard errors on the group's few hundred claims)."""
    book = claims["is_fraud"].mean()
    assert group["true_fraud_prob"].mean() <= claims["true_fraud_prob"].mean()
    assert group["is_fraud"].mean() <= book + 2 * np.sqrt(book * (1 - book) / len(group))


def test_fraud_is_confirmed_months_after_the_report_and_only_fraud(claims):
    confirmed = claims["fraud_confirmed_at"].notna()
    assert not confirmed[~claims["is_fraud"]].any()
    assert confirmed[claims["is_fraud"]].mean() == pytest.approx(0.7, abs=0.04)
    after = (claims["fraud_confirmed_at"] - claims["report_date"])[confirmed].dt.days
    assert after.min() >= 30 and after.max() < 180
    assert (claims["fraud_confirmed_at"] > claims["report_date"].max()).any()  # not yet known within the book


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


def test_parquet_books_are_written_in_row_groups_a_spark_task_can_hold(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    monkeypatch.setattr("training.generate.PARQUET_ROW_GROUP", 1_000)
    frame = generate_claims(2_500, seed=3)
    write_claims(frame, tmp_path / "book.parquet")
    assert pq.ParquetFile(tmp_path / "book.parquet").metadata.num_row_groups == 3
    back = pd.read_parquet(tmp_path / "book.parquet")
    assert back["claim_id"].tolist() == frame["claim_id"].tolist()  # every claim, in order
    assert (back["report_date"] == frame["report_date"]).all()
