"""The split by time: the model is judged on claims newer than any it learned from, as in real use."""

import numpy as np
import pytest

from training.data import split_claims


def _ordered_by_time(times: np.ndarray, split) -> None:
    train, validation, test = times[split.train], times[split.validation], times[split.test]
    assert min(len(train), len(validation), len(test)) > 0
    assert train.max() <= validation.min(), "a validation claim was reported before a training claim"
    assert validation.max() <= test.min(), "a test claim was reported before a validation claim"
    assert not (split.train & split.validation).any() and not (split.validation & split.test).any()
    assert (split.train | split.validation | split.test).all()


@pytest.mark.parametrize("on", ["report_date", "loss_date"])
def test_every_test_claim_is_newer_than_every_validation_claim_and_those_than_every_training_claim(
        typed_claims, on):
    # Rows in no particular order: the split must follow the dates, not the row order.
    claims = typed_claims.sample(frac=1.0, random_state=5).reset_index(drop=True)
    if on == "loss_date":
        claims = claims.drop(columns=["report_date"])
    split = split_claims(claims, 0.15, 0.15, seed=0)
    _ordered_by_time(claims[on].to_numpy(dtype="datetime64[s]"), split)
    assert split.test.mean() == pytest.approx(0.15, abs=0.01)
    assert split.validation.mean() == pytest.approx(0.15, abs=0.01)
    described = split.describe()  # what the run logs as its parameters
    assert split.kind == "time" and described["split"] == "time" and described["split_on"] == on
    assert described["n_test"] == split.test.sum() and described["n_train"] == split.train.sum()
    assert str(claims.loc[split.test, on].min().to_datetime64().astype("datetime64[s]")) == described["test_start"]


def test_without_claim_dates_the_split_says_it_is_not_by_time(typed_claims):
    claims = typed_claims.drop(columns=["report_date", "loss_date"])
    split = split_claims(claims, 0.15, 0.15, seed=0)
    assert split.kind == "stratified" and split.describe()["split"] == "stratified"
    fraud = claims["is_fraud"].to_numpy(dtype=bool)
    assert fraud[split.test].mean() == pytest.approx(fraud.mean(), abs=0.005)
