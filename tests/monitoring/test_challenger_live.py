"""A challenger proven on live claims (issue #14): the champion was trained on the book's first
months; a challenger retrained on the whole book is scored in its shadow on the month after, whose
outcomes come back; `compare` shows it better on those labelled live claims, and `promote --live`
promotes it. A worse challenger (the same book, two trees) shadows the new champion, loses on the
next month's labelled claims, and is refused. (The champion is trained on the oldest claims: the gate compares on the candidate's test
period, the newest, which a champion trained on the newest claims would be judged on in-sample.)"""

import json
import time

import pytest
import sqlalchemy as sa

from cli.main import main
from tests.conftest import tracking_store_in
from tests.serving.client import as_json
from training.generate import write_claims
from training.scenarios import book_and_next_month

pytestmark = pytest.mark.slow
SMALL = 2_000


@pytest.fixture
def home(tmp_path, monkeypatch, empty_tracking_store):
    for key, value in {"CLAIMTRIAGE_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": tracking_store_in(tmp_path, empty_tracking_store),
                       "CLAIMTRIAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'claims.db'}",
                       "CLAIMTRIAGE_CONFIG": str(tmp_path / "claimtriage.toml")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "claimtriage.toml").write_text("[training]\ncv_below_rows = 0\nmax_trees = 150\n")
    return tmp_path


def _shadowed_month(month, outcomes: bool) -> None:
    """Score the month with the champion (the challenger in its shadow), wait for every shadow row,
    and, with `outcomes`, report the month's outcomes as the claims system would."""
    from serving.loading import load_scorer
    from cli.send_command import outcome_of

    scorer, info = load_scorer()
    assert info["challenger"] is not None
    assert scorer.score(as_json(month, scorer.bundle), explain=False).n_errors == 0
    deadline = time.monotonic() + 120
    with scorer.store.engine.connect() as conn:
        while conn.execute(sa.text("SELECT count(*) FROM shadow_decisions")).scalar_one() < len(month):
            assert time.monotonic() < deadline, "the shadow did not score every claim"
            time.sleep(0.2)
    if outcomes:
        for row in month.itertuples():
            scorer.store.record_outcome(row.claim_id, outcome_of(bool(row.is_fraud), bool(row.paid_as_filed)), None,
                                        by="claims-system", via="api key claims-system")
    scorer.store.engine.dispose()


def _compare(capsys) -> dict:
    capsys.readouterr()
    assert main(["compare", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_challenger_trained_on_more_claims_wins_live_and_a_worse_one_is_refused(home, capsys):
    book, month = book_and_next_month(16_000, seed=4, months=24)
    write_claims(book.head(SMALL), home / "first.parquet")
    write_claims(book, home / "book.parquet")
    (home / "worse.toml").write_text("[training]\ncv_below_rows = 0\nmax_trees = 2\nnum_leaves = 3\n")
    # The gate compares the two versions on the candidate's ~2,400 test claims (about 50 frauds), where a
    # ROC-AUC moves by 0.01-0.02 by chance: under the fraud model's monotone constraints the first months'
    # champion came within that of the challenger (0.800 against 0.786, PR-AUC 0.099 against 0.196).
    (home / "claimtriage.toml").write_text("[registry]\npromotion_tolerance = 0.02\n")
    assert main(["train", "--data", str(home / "first.parquet")]) == 0  # version 1, champion: the first months
    assert main(["retrain", "--data", str(home / "book.parquet"), "--outcomes", str(home / "first.parquet")]) == 0
    _shadowed_month(month, outcomes=True)  # version 2 shadows version 1 on the month after the book
    live = _compare(capsys)
    assert live["claims"] == live["labelled"] == len(month) and live["challenger_version"] == "2"
    champion, challenger = (live["quality"][side]["fraud_scores"] for side in ("champion", "challenger"))
    assert challenger["roc_auc"] > champion["roc_auc"] and challenger["pr_auc"] > champion["pr_auc"], live["quality"]
    assert main(["promote", "2", "--live"]) == 0
    said = capsys.readouterr().out
    assert "live, in the champion's shadow" in said and "version 2 promoted to champion (was version 1)" in said

    # A worse challenger shadows the new champion, loses live, and the gate refuses it.
    assert main(["--config", str(home / "worse.toml"), "retrain", "--data", str(home / "book.parquet"),
                 "--outcomes", str(home / "first.parquet")]) == 0
    later = month.assign(claim_id="W-" + month["claim_id"].astype("str"))
    _shadowed_month(later, outcomes=True)
    live = _compare(capsys)
    assert live["challenger_version"] == "3" and live["champion_versions"] == ["2"]
    champion, challenger = (live["quality"][side]["fraud_scores"] for side in ("champion", "challenger"))
    assert challenger["pr_auc"] < champion["pr_auc"], live["quality"]
    assert main(["promote", "3", "--live"]) == 2
    captured = capsys.readouterr()
    assert "version 3 is worse than champion version 2" in captured.err and "live, in the champion's shadow" in captured.out
    from mlflow import MlflowClient

    client = MlflowClient()
    assert str(client.get_model_version_by_alias("claim-triage", "champion").version) == "2"
    assert str(client.get_model_version_by_alias("claim-triage", "challenger").version) == "3"
