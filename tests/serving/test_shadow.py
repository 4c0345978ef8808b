"""The shadow challenger (serving/shadow.py): with a `challenger` alias in the registry, the service scores
every claim it decided with that version too, off the answer's path, into `shadow_decisions`; the answer,
the cases and the ledger stay the champion's. Fast tests drive the scorer and its shadow in the process on
each claim store; the slow ones hold a real registry and real servers over HTTP to the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from models.config import Deadlines
from serving.scoring import Scorer
from serving.shadow import Challenger, Shadow, shadow_table
from serving.store import ClaimStore
from tests.conftest import tracking_store_in
from tests.serving.client import as_json
from training.generate import generate_claims

ROOT = Path(__file__).resolve().parents[2]
TRAINING_CLAIMS = 3_000
NOW = datetime(2026, 11, 25, 12, 0, 0)


# --- in the process: the scorer and its shadow on each claim store

def shadowed_scorer(bundle, history_claims, store_url: str, max_queue: int = 10_000):
    """A scorer of `bundle` as version "1" over a store holding `history_claims`, with the same bundle as
    challenger version "2" in its shadow; and the list its skipped counts go to."""
    store = ClaimStore(store_url)
    store.seed(history_claims)
    table = shadow_table(store.metadata)
    table.create(store.engine, checkfirst=True)
    skipped: list[int] = []
    scorer = Scorer(bundle, "1", store, Deadlines())
    scorer.add_shadow(Shadow(Challenger(bundle, "2"), store.engine, table, max_queue=max_queue, max_batch=16,
                             on_skipped=skipped.append))
    return scorer, skipped


def new_claims(bundle, known, n: int = 60) -> list[dict]:
    """`n` new claims as JSON, many sharing a claimant, payee or provider with `known` (real history)."""
    new = generate_claims(2_000, seed=41).sort_values("report_date").iloc[-n:].reset_index(drop=True)
    new.loc[::3, "claimant_id"] = known["claimant_id"].iloc[:len(new.loc[::3])].to_numpy()
    new.loc[1::4, "payee_account"] = known["payee_account"].iloc[50:50 + len(new.loc[1::4])].to_numpy()
    new.loc[2::5, "provider_id"] = known["provider_id"].iloc[100:100 + len(new.loc[2::5])].to_numpy()
    return as_json(new, bundle)


def test_a_challenger_of_the_same_version_repeats_every_answer_exactly_on_each_store(fitted_run, typed_claims,
                                                                                     store_url):
    """The same model in the shadow must give the same scores, bit for bit: its history is the champion's,
    counted point in time in the same transaction, batch and single claims alike."""
    history = typed_claims.tail(4_000)
    scorer, skipped = shadowed_scorer(fitted_run.bundle, history, store_url)
    claims = new_claims(fitted_run.bundle, history)
    answers = scorer.score(claims[:40], explain=False, now=NOW).results + scorer.score_each(claims[40:], now=NOW)
    assert not any("errors" in a for a in answers)
    assert wait_for_shadow_rows(store_url, len(answers)) == len(answers) and skipped == []
    shadow = rows(store_url, "SELECT s.claim_id, s.model_version, s.decision, s.fraud_probability, "
                  "s.approval_probability, s.anomaly_score, d.claim_id, d.model_version FROM shadow_decisions s "
                  "JOIN decisions d ON d.id = s.decision_id ORDER BY s.id")
    assert [row[0] for row in shadow] == [row[6] for row in shadow] == [a["claim_id"] for a in answers]
    assert {(row[1], row[7]) for row in shadow} == {("2", "1")}
    assert [row[2:6] for row in shadow] == [(a["decision"], a["scores"]["fraud_probability"],
                                             a["scores"]["approval_probability"], a["scores"]["anomaly_score"])
                                            for a in answers]
    assert len({row[3] for row in shadow}) > 10  # the claims differ: the comparison is not of one number


def test_a_full_queue_skips_the_claims_that_do_not_fit_and_counts_them(fitted_run, typed_claims, tmp_path):
    history = typed_claims.tail(2_000)
    store_url = f"sqlite:///{tmp_path / 'claims.db'}"
    scorer, skipped = shadowed_scorer(fitted_run.bundle, history, store_url, max_queue=5)
    answers = scorer.score(new_claims(fitted_run.bundle, history, 20), explain=False, now=NOW).results
    assert len(answers) == 20 and skipped == [15]
    assert wait_for_shadow_rows(store_url, 5) == 5
    time.sleep(0.3)
    assert [row[0] for row in rows(store_url, "SELECT claim_id FROM shadow_decisions ORDER BY id")] == \
        [a["claim_id"] for a in answers[:5]]


# --- over HTTP: a registry with a challenger, and servers


@pytest.fixture(scope="module")
def registry(tmp_path_factory, empty_tracking_store):
    """A registry holding a champion (3,000 claims) and a challenger (trained on 4,000: a different
    model), the claims for both, and the environment to serve them. Trained once per test session:
    tests/serving/test_live_metrics.py finds it by its folder."""
    from models.config import load_config
    from models.pyfunc import load_bundle
    from training.registry import configure

    home = tmp_path_factory.getbasetemp() / "shadow-registry"
    env = {"CLAIMTRIAGE_HOME": str(home), "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
           "BENTOML_DO_NOT_TRACK": "true", "BENTOML_HOME": str(home / "bentoml"),
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    claims = generate_claims(TRAINING_CLAIMS + 1_400, seed=31).sort_values("report_date", kind="stable")
    claims = claims.reset_index(drop=True)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        if not (home / "versions.json").exists():
            home.mkdir(exist_ok=True)
            tracking_store_in(home, empty_tracking_store)
            mp.chdir(home)
            _train_champion_and_challenger(claims, home)
        configure(load_config())  # this registry, whichever another fixture pointed MLflow at
        versions = json.loads((home / "versions.json").read_text())
        bundles = {role: load_bundle(f"models:/claim-triage/{version}") for role, version in versions.items()}
    return {"home": home, "env": env, "claims": claims, "new": claims.iloc[TRAINING_CLAIMS + 1_000:],
            "versions": versions, **bundles}


def _train_champion_and_challenger(claims, home: Path) -> None:
    from mlflow import MlflowClient

    from models.config import load_config
    from training.train import run_training

    (home / "claimtriage.toml").write_text("[training]\ncv_below_rows = 0\n")  # no cross-validation: not what is tested here
    config = load_config()
    champion = run_training(claims.head(TRAINING_CLAIMS), config, source="champion")
    challenger = run_training(claims.head(TRAINING_CLAIMS + 1_000), config, source="challenger", promote=False)
    MlflowClient().set_registered_model_alias(config.registry.model_name, "challenger", challenger.version)
    (home / "versions.json").write_text(json.dumps({"champion": champion.version, "challenger": challenger.version}))


def serve(registry, name: str, settings: str, free_port, wait_until_ready) -> dict:
    """A server of `registry`'s champion on a claim store of its own, with `settings` in its
    claimtriage.toml; an API key and its store's URL with it. Stop it with `stop`."""
    from serving.store import ClaimStore

    home = registry["home"]
    config = home / f"{name}.toml"
    config.write_text(settings)
    store_url = f"sqlite:///{home / name}.db"
    env = {**os.environ, **registry["env"], "CLAIMTRIAGE_CONFIG": str(config), "CLAIMTRIAGE_DATABASE_URL": store_url}
    credentials = ClaimStore(store_url)
    key = credentials.access.create_key(credentials.engine, "tests")
    credentials.engine.dispose()
    port, log = free_port(), home / f"{name}.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "serving.service:ClaimTriage", "--host",
                                   "127.0.0.1", "--port", str(port), "--working-dir", str(ROOT)],
                                  cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_until_ready(server, base, log, seconds=180)
    return {"base": base, "server": server, "store_url": store_url, "log": log,
            "auth": {"Authorization": f"Bearer {key}"}}


def stop(served: dict) -> None:
    served["server"].terminate()
    served["server"].wait(timeout=30)


@pytest.fixture(scope="module")
def shadowed(registry, free_port, wait_until_ready):
    """The champion served with the challenger in its shadow."""
    served = serve(registry, "shadowed", "", free_port, wait_until_ready)
    yield served
    stop(served)


def rows(store_url: str, query: str) -> list:
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(query).all()
    finally:
        engine.dispose()


def metric(text: str, sample: str, **labels: str) -> float:
    """The sum of the samples named `sample` whose labels include `labels` (0 where there are none)."""
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()))


def wait_for_shadow_rows(store_url: str, n: int, seconds: float = 60) -> int:
    """Shadow rows once there are `n` (the challenger scores after the answer), or the count at the deadline."""
    deadline = time.monotonic() + seconds
    while True:
        count = rows(store_url, "SELECT count(*) FROM shadow_decisions")[0][0]
        if count >= n or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


@pytest.mark.slow
def test_each_claim_decided_gets_one_shadow_row_of_the_challenger_and_the_answer_stays_the_champion_s(
        registry, shadowed):
    champion, challenger = registry["champion"], registry["challenger"]
    versions = registry["versions"]
    about = httpx.get(shadowed["base"] + "/model", headers=shadowed["auth"], timeout=30).json()
    assert about["version"] == versions["champion"] and about["challenger"]["version"] == versions["challenger"]

    # One batch on the training history alone: offline, each bundle scores it the same way.
    batch = registry["new"].iloc[:80]
    reply = httpx.post(shadowed["base"] + "/score_batch", json={"claims": as_json(batch, champion), "explain": False},
                       headers=shadowed["auth"], timeout=60)
    assert reply.status_code == 200 and reply.json()["n_errors"] == 0
    answers = reply.json()["results"]
    history = registry["claims"].head(TRAINING_CLAIMS)
    offline = {name: bundle.score(batch.reset_index(drop=True), history)
               for name, bundle in (("champion", champion), ("challenger", challenger))}
    assert [a["decision"] for a in answers] == offline["champion"]["decision"].tolist()
    assert [a["scores"]["fraud_probability"] for a in answers] == pytest.approx(
        offline["champion"]["fraud_probability"].tolist(), rel=1e-9)
    assert {a["model_version"] for a in answers} == {versions["champion"]}

    # Then single claims, one by one.
    singles = as_json(registry["new"].iloc[80:86], champion)
    for claim in singles:
        answer = httpx.post(shadowed["base"] + "/score", json=claim, headers=shadowed["auth"], timeout=30)
        assert answer.status_code == 200 and answer.json()["model_version"] == versions["champion"]
        answers.append(answer.json())
    assert wait_for_shadow_rows(shadowed["store_url"], len(answers)) == len(answers)
    time.sleep(0.5)  # none more come
    shadow = rows(shadowed["store_url"], "SELECT s.claim_id, s.decision_id, s.model_version, s.decision, "
                  "s.fraud_probability, d.claim_id, d.model_version, d.decision, d.fraud_probability "
                  "FROM shadow_decisions s JOIN decisions d ON d.id = s.decision_id ORDER BY s.id")
    assert len(shadow) == len(answers) == len({row[1] for row in shadow})  # one per decision, each joined
    assert [row[0] for row in shadow] == [a["claim_id"] for a in answers]
    assert all(row[0] == row[5] and row[2] == versions["challenger"] and row[6] == versions["champion"]
               for row in shadow)
    # The shadow rows are the challenger's own scores: offline, on the same history.
    first = shadow[:len(batch)]
    assert [row[3] for row in first] == offline["challenger"]["decision"].tolist()
    assert [row[4] for row in first] == pytest.approx(offline["challenger"]["fraud_probability"].tolist(), rel=1e-9)
    assert any(abs(row[4] - row[8]) > 1e-6 for row in shadow)  # two different models: the test can tell them apart

    # Never a case, a decision or a ledger entry of the shadow's: one decision per answer, a case per reviewed one.
    assert rows(shadowed["store_url"], "SELECT count(*) FROM decisions")[0][0] == len(answers)
    reviewed = sum(a["decision"] != "AUTO_APPROVE" for a in answers)
    assert rows(shadowed["store_url"], "SELECT count(*) FROM cases")[0][0] == reviewed
    assert rows(shadowed["store_url"], "SELECT count(*) FROM ledger")[0][0] == len(answers) + reviewed


@pytest.mark.slow
def test_without_a_challenger_nothing_is_loaded_and_no_shadow_row_is_written(service):
    about = httpx.get(service["base"] + "/model", headers=service["auth"], timeout=30).json()
    assert about["challenger"] is None
    claim = as_json(service["new"].iloc[[11]], service["bundle"])[0]
    reply = httpx.post(service["base"] + "/score", json=dict(claim, claim_id="SHADOW-NONE-1"),
                       headers=service["auth"], timeout=30)
    assert reply.status_code == 200
    time.sleep(1.0)
    assert rows(service["store_url"], "SELECT count(*) FROM shadow_decisions")[0][0] == 0
    assert "scores in the shadow" not in service["log"].read_text()


@pytest.mark.slow
def test_a_full_shadow_queue_skips_and_counts_claims_and_never_holds_the_answer(registry, free_port,
                                                                                 wait_until_ready):
    served = serve(registry, "tiny-queue", "[serving]\nshadow_queue_claims = 1\nshadow_batch_claims = 1\n",
                   free_port, wait_until_ready)
    try:
        claims = as_json(registry["new"].iloc[:200], registry["champion"])
        reply = httpx.post(served["base"] + "/score_batch", json={"claims": claims, "explain": False},
                           headers=served["auth"], timeout=60)
        assert reply.status_code == 200 and reply.json()["n_scored"] == 200
        written = wait_for_shadow_rows(served["store_url"], 1)
        time.sleep(0.5)
        text = httpx.get(served["base"] + "/metrics", headers=served["auth"], timeout=30).text
        skipped = metric(text, "claimtriage_shadow_skipped_claims_total")
        assert written == 1 and skipped == 199  # a queue of one claim: the other 199 skipped, and counted
        assert "queue full (1 claims), 199 claims skipped" in served["log"].read_text()
    finally:
        stop(served)
