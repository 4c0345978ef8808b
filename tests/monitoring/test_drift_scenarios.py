"""Drift proven on scenarios, not asserted (issue #14): a champion trained on a two-year generated
book; the month reported after it, unshifted, raises no alert (two seeds); the same month with its
amounts inflated and a new ring, scored through the served service over HTTP, is flagged by
`claimtriage monitor` with the shifted features and the scores at the top and an alert exit code."""

import json
import os
from datetime import timedelta

import pytest

from cli.main import main
from monitoring.alerts import ALERT_EXIT_CODE
from serving.clock import utc_now
from tests.conftest import tracking_store_in
from tests.serving.client import Server, as_json
from training.scenarios import apply_scenarios, book_and_next_month, parse_scenarios
from training.train import run_training

pytestmark = pytest.mark.slow
# A book large enough that a month holds ~900 claims (drift alerts need [monitoring] min_drift_claims, 500).
CLAIMS, MONTHS = 20_000, 24
SHIFT = "inflation:factor=2,ring:claims=60"
AMOUNT_FEATURES = {"claim_amount", "amount_to_typical_for_loss_type", "amount_to_premium", "amount_to_coverage_limit"}


@pytest.fixture(scope="module")
def champion(tmp_path_factory, empty_tracking_store):
    """A function giving, per seed, a home with a registry whose champion was trained on the seed's
    book, the book and its next month; trained once per seed for the module."""
    made = {}

    def of(seed: int):
        if seed not in made:
            made[seed] = _champion(tmp_path_factory.mktemp(f"seed{seed}"), seed, empty_tracking_store)
        return made[seed]
    return of


def _champion(home, seed: int, empty_tracking_store):
    from models.config import load_config

    (home / "claimtriage.toml").write_text("[training]\ncv_below_rows = 0\nmax_trees = 150\n")
    book, month = book_and_next_month(CLAIMS, seed=seed, months=MONTHS)
    env = {"CLAIMTRIAGE_HOME": str(home), "CLAIMTRIAGE_CONFIG": str(home / "claimtriage.toml"),
           "MLFLOW_TRACKING_URI": tracking_store_in(home, empty_tracking_store), "BENTOML_DO_NOT_TRACK": "true",
           "BENTOML_HOME": str(home / "bentoml")}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.chdir(home)
        run_training(book, load_config(), source=f"book seed {seed}")
    return home, env, book, month


def _monitor(home, env: dict, store: str, since, until) -> tuple[int, dict]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**env, "CLAIMTRIAGE_DATABASE_URL": store}.items():
            patch.setenv(key, value)
        patch.chdir(home)
        code = main(["monitor", "--since", since.isoformat(), "--until", until.isoformat(),
                     "--out", str(home / "report.html")])
    return code, json.loads((home / "report.json").read_text())


@pytest.mark.parametrize("seed", [1, 2])
def test_an_unshifted_month_raises_no_alert(champion, seed):
    from serving.loading import load_scorer

    home, env, _, month = champion(seed)
    store = f"sqlite:///{home / 'unshifted.db'}"
    since = utc_now() - timedelta(seconds=1)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**env, "CLAIMTRIAGE_DATABASE_URL": store}.items():
            patch.setenv(key, value)
        scorer, _ = load_scorer()
        assert scorer.score(as_json(month, scorer.bundle), explain=False).n_errors == 0
        scorer.store.engine.dispose()
    code, found = _monitor(home, env, store, since, utc_now() + timedelta(seconds=1))
    rows = found["drift"]["rows"]
    assert found["period"]["claims_decided"] == len(month) >= 500 and len(rows) > 30
    assert code == 0 and found["alerts"] == [], found["alerts"]
    scores = {row["name"]: row["psi"] for row in rows if row["kind"] == "score"}
    assert max(scores.values()) < 0.1, scores


def test_a_shifted_month_scored_through_the_service_is_flagged(champion, free_port, wait_until_ready):
    from models.pyfunc import load_bundle

    home, env, book, month = champion(1)
    shifted = apply_scenarios(month, parse_scenarios(SHIFT), 1, history=book)
    store = f"sqlite:///{home / 'shifted.db'}"
    served = {**os.environ, **env, "CLAIMTRIAGE_DATABASE_URL": store}
    server = Server(home, served, "models:/claim-triage@champion", free_port(), wait_until_ready)
    try:
        since = utc_now() - timedelta(seconds=1)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
            claims = as_json(shifted, load_bundle("models:/claim-triage/1"))
        for start in range(0, len(claims), 500):
            reply = server.post("/score_batch", {"claims": claims[start:start + 500], "explain": False})
            assert reply.status_code == 200 and reply.json()["n_errors"] == 0, reply.text[:500]
    finally:
        server.stop()
    code, found = _monitor(home, env, store, since, utc_now() + timedelta(seconds=1))
    assert code == ALERT_EXIT_CODE and found["period"]["claims_decided"] == len(shifted)
    rows = found["drift"]["rows"]
    top = [row["name"] for row in rows[:4]]
    assert "amount_to_typical_for_loss_type" in top and "fraud_probability" in top, top
    alerted = {alert["message"].split(":")[0] for alert in found["alerts"] if alert["name"] == "drift"}
    assert "feature amount_to_typical_for_loss_type" in alerted and "score fraud_probability" in alerted
    untouched = {row["name"]: row["psi"] for row in rows if row["kind"] == "feature"
                 and row["name"] in ("loss_hour", "claimant_age", "region", "loss_weekday")}
    assert max(untouched.values()) < 0.1, untouched  # what the scenario did not shift stays put
