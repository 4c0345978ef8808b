"""Fixtures for the bulk engines: one Spark session in local mode for the whole run.

Where Spark cannot run (no pyspark, no Java) the Spark tests are skipped with that reason; the
local engine's tests run regardless. With CLAIMTRIAGE_REQUIRE_SPARK=1 (CI) they fail instead, so a
run without Spark never passes for one with it.
"""

from __future__ import annotations

import os

import pytest

from bulk.spark_session import spark_problem, spark_session


@pytest.fixture(scope="session")
def spark():
    problem = spark_problem()
    if problem:
        if os.environ.get("CLAIMTRIAGE_REQUIRE_SPARK") == "1":
            pytest.fail(f"CLAIMTRIAGE_REQUIRE_SPARK=1 but {problem}")
        pytest.skip(problem)
    # Two cores, few shuffle partitions: the tests' frames are small, and 200 partitions would
    # spend most of each job starting tasks.
    session = spark_session("local[2]", app_name="claimtriage-tests",
                            config={"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "2"})
    yield session
    session.stop()


BULK_TRAINING_CLAIMS = 5_000


@pytest.fixture(scope="session")
def bulk_home(tmp_path_factory, empty_tracking_store):
    """A home with a registered champion trained on 5,000 generated claims: (home, environment)."""
    from dataclasses import replace

    from models.config import load_config
    from tests.conftest import tracking_store_in
    from training.generate import generate_claims
    from training.train import run_training

    home = tmp_path_factory.mktemp("bulk")
    env = {"CLAIMTRIAGE_HOME": str(home), "MLFLOW_TRACKING_URI": tracking_store_in(home, empty_tracking_store),
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    with pytest.MonkeyPatch.context() as patch:
        _enter(patch, home, env)
        config = load_config()
        config = replace(config, training=replace(config.training, cv_below_rows=0))
        run_training(generate_claims(BULK_TRAINING_CLAIMS, seed=11), config, source="fixture")
    return home, env


@pytest.fixture
def in_bulk_home(bulk_home, monkeypatch):
    """Work in the bulk home (its registry and champion); returns the home."""
    home, env = bulk_home
    _enter(monkeypatch, home, env)
    return home


def _enter(patch, home, env) -> None:
    for key, value in env.items():
        patch.setenv(key, value)
    patch.delenv("CLAIMTRIAGE_CONFIG", raising=False)
    patch.delenv("CLAIMTRIAGE_DATABASE_URL", raising=False)
    patch.chdir(home)


@pytest.fixture(scope="session")
def edge_book():
    """3,000 generated claims made to hold what bulk scoring must count exactly: claims of one claimant
    in the same second, exactly 90 and 365 days apart (and one second inside), payees, phones and
    addresses shared across claimants. Canonical columns as a claims system writes them."""
    import pandas as pd

    from training.generate import generate_claims

    book = generate_claims(3_000, seed=12).sort_values("report_date", kind="stable").reset_index(drop=True)
    report, loss = book["report_date"].copy(), book["loss_date"].copy()

    def follow(first: int, later: int, gap: pd.Timedelta) -> None:
        """Claim `later` becomes claim `first`'s claimant's, reported `gap` after it."""
        book.loc[later, "claimant_id"] = book.loc[first, "claimant_id"]
        moment = report[first] + gap
        report[later] = moment
        loss[later] = min(loss[later], moment.normalize())
        book.loc[later, "policy_start_date"] = min(book.loc[later, "policy_start_date"], loss[later].normalize())

    for i, gap in enumerate([pd.Timedelta(0), pd.Timedelta(0), pd.Timedelta(days=90), pd.Timedelta(days=90, seconds=-1),
                             pd.Timedelta(days=365), pd.Timedelta(days=365, seconds=1)]):
        follow(100 + 10 * i, 1_500 + 10 * i, gap)
    for first, others, field in ((200, range(201, 207), "payee_account"), (300, range(301, 306), "claimant_phone"),
                                 (400, range(401, 405), "claimant_address")):
        book.loc[list(others), field] = book.loc[first, field]
    # Three claimants' claims in one second: none counts the others.
    report[[600, 601, 602]] = report[600]
    book.loc[[601, 602], "payee_account"] = book.loc[600, "payee_account"]
    book["report_date"], book["loss_date"] = report, loss
    return book
