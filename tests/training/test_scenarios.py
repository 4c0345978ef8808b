"""Drift scenarios change what they name, and only that (within noise), on small generated books."""

import numpy as np
import pandas as pd
import pytest

from cli.main import main
from features.validation import validate_claims
from training.generate import generate_claims
from training.scenarios import DATE_COLUMNS, apply_scenarios, book_and_next_month, parse_scenarios

LABELS = ["is_fraud", "paid_as_filed", "true_fraud_prob", "true_paid_as_filed_prob"]


@pytest.fixture(scope="module")
def book():
    return generate_claims(4_000, seed=21)


def shifted(book, text, seed=0):
    return apply_scenarios(book, parse_scenarios(text), seed)


def assert_same(a, b, columns):
    for column in columns:
        pd.testing.assert_series_equal(a[column], b[column], check_dtype=False, obj=column)


def test_later_moves_every_date_by_the_days_and_nothing_else(book):
    out = shifted(book, "later:days=400")
    for column in DATE_COLUMNS:
        assert ((out[column] - book[column]) == pd.Timedelta(days=400)).all(), column
    assert_same(out, book, [c for c in book.columns if c not in DATE_COLUMNS])


def test_inflation_scales_the_named_loss_types_only(book):
    out = shifted(book, "inflation:factor=1.5:loss_types=water+fire")
    hit = book["loss_type"].isin(["water", "fire"])
    assert hit.sum() > 100
    ratio = out["claim_amount"] / book["claim_amount"]
    assert np.allclose(ratio[hit], 1.5, atol=1e-3) and (ratio[~hit] == 1).all()
    assert_same(out, book, [c for c in book.columns if c != "claim_amount"])
    everything = shifted(book, "inflation:factor=1.2")
    assert np.allclose(everything["claim_amount"] / book["claim_amount"], 1.2, atol=1e-3)


def test_fraud_raises_the_fraud_rate_as_drawn_and_leaves_the_claims(book):
    out = shifted(book, "fraud:odds=4")
    p = book["true_fraud_prob"]
    expected = (p * 4 / (1 - p + p * 4)).sum()
    # The count of fraud is a sum of independent draws: within 4 standard deviations of its mean.
    spread = np.sqrt((out["true_fraud_prob"] * (1 - out["true_fraud_prob"])).sum())
    assert abs(out["is_fraud"].sum() - expected) < 4 * spread
    assert out["is_fraud"].sum() > 2 * book["is_fraud"].sum()
    assert out["is_fraud"][book["is_fraud"]].all(), "a fraudulent claim stays fraudulent"
    assert not (out["paid_as_filed"] & out["is_fraud"]).any()
    assert not (out["paid_as_filed"] & ~book["paid_as_filed"]).any(), "no claim becomes paid as filed"
    assert_same(out, book, [c for c in book.columns if c not in LABELS])


def test_a_new_ring_works_through_one_unseen_provider_and_shared_identities(book):
    out = shifted(book, "ring:claims=60:members=12")
    ring = out.loc[~out["claim_id"].isin(book["claim_id"])]
    assert len(out) == len(book) + 60 and len(ring) == 60
    kept = out.loc[out["claim_id"].isin(book["claim_id"])].set_index("claim_id").loc[book["claim_id"]].reset_index()
    assert_same(kept, book, book.columns)
    assert ring["provider_id"].nunique() == 1 and not ring["provider_id"].isin(book["provider_id"]).any()
    assert ring["claimant_id"].nunique() == 12
    # Linked: a dozen people over a handful of phones and accounts.
    assert ring["claimant_phone"].nunique() < 12 and ring["payee_account"].nunique() < 12
    assert ring["is_fraud"].mean() > 5 * book["is_fraud"].mean()
    assert ring["report_date"].between(book["report_date"].min(), book["report_date"].max()).all()
    assert validate_claims(out, require_labels=True).ok


def test_the_next_month_follows_the_book_and_carries_the_shift_alone():
    book, month = book_and_next_month(5_000, seed=4, scenarios=parse_scenarios("inflation:factor=2"))
    _, plain = book_and_next_month(5_000, seed=4)
    assert month["report_date"].min() > book["report_date"].max()
    assert (month["report_date"] - month["report_date"].min()).max() < pd.Timedelta(days=31)
    assert month["claimant_id"].isin(book["claimant_id"]).mean() > 0.2, "the same people claim on"
    assert np.allclose(month["claim_amount"] / plain["claim_amount"], 2.0, atol=1e-3)
    again, _ = book_and_next_month(5_000, seed=4)
    pd.testing.assert_frame_equal(book, again)


def test_unknown_scenarios_and_parameters_are_named():
    with pytest.raises(ValueError, match="unknown scenario 'flood'.*later, inflation, fraud, ring"):
        parse_scenarios("flood")
    with pytest.raises(ValueError, match="ring: 'size=3'.*claims, members"):
        parse_scenarios("ring:size=3")
    with pytest.raises(ValueError, match="loss_types lava not in the book"):
        shifted(generate_claims(200, seed=1), "inflation:loss_types=lava")


def test_generate_writes_the_book_and_its_shifted_month(tmp_path, capsys):
    book, month = tmp_path / "book.parquet", tmp_path / "month.parquet"
    assert main(["generate", "--claims", "3000", "--seed", "2", "--out", str(book), "--next-month", str(month),
                 "--scenario", "ring:claims=30,later:days=10"]) == 0
    assert "of the next month" in capsys.readouterr().out
    written = pd.read_parquet(month)
    assert written["claim_id"].str.startswith("Cr").sum() == 30
    assert main(["generate", "--claims", "300", "--extract", str(tmp_path / "x"), "--scenario", "fraud"]) == 2
