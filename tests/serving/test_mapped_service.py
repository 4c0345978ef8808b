"""An insurer's own extract, end to end over HTTP: versions trained through a mapping serve, take the
extract's own records (and canonical ones), answer as the offline pipeline does, and name the
extract's column in every error."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.mapping import apply_mapping, load_mapping, read_source
from models.config import load_config
from models.pyfunc import load_bundle
from serving.loading import check_startup
from serving.store import ClaimStore
from cli.main import main
from training.extracts import write_extract
from tests.conftest import tracking_store_in
from tests.serving.client import Server

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PUBLIC = ROOT / "tests/data/insurance_claims.csv"
SHIPPED = ROOT / "mappings/insurance_claims.yaml"


@pytest.fixture(scope="module")
def served(tmp_path_factory, free_port, wait_until_ready, empty_tracking_store):
    """Version 1: the public extract through the shipped mapping; version 2: a generated extract
    that lacks claimant ids, report dates and claim amounts. Each served by `claimtriage serve`."""
    home = tmp_path_factory.mktemp("mapped")
    (home / "claimtriage.toml").write_text("[training]\ncv_below_rows = 0\n")  # held-out evaluation: no cross-validation
    env = {"CLAIMTRIAGE_HOME": str(home), "CLAIMTRIAGE_CONFIG": str(home / "claimtriage.toml"),
           "MLFLOW_TRACKING_URI": tracking_store_in(home, empty_tracking_store),
           "CLAIMTRIAGE_DATABASE_URL": f"sqlite:///{home / 'claims.db'}", "BENTOML_DO_NOT_TRACK": "true",
           "BENTOML_HOME": str(home / "bentoml")}
    generated, generated_mapping = write_extract(home / "generated", n_claims=3000, seed=5)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        assert main(["train", "--data", str(PUBLIC), "--mapping", str(SHIPPED)]) == 0
        assert main(["train", "--data", str(generated), "--mapping", str(generated_mapping), "--no-promote"]) == 0
        bundles = {1: load_bundle("models:/claim-triage/1"), 2: load_bundle("models:/claim-triage/2")}
        # One store for both, as one insurer's: seeded with version 1's claims first, as `claimtriage serve`
        # does before its server starts (a server started and stopped for it took a start's time), then
        # version 2's server brings its own extract's claims to it.
        check_startup(load_config(), "models:/claim-triage/1")
    store = ClaimStore(env["CLAIMTRIAGE_DATABASE_URL"])
    key = store.access.create_key(store.engine, "tests")
    store.engine.dispose()
    full_env = {**os.environ, **env}
    second = Server(home, full_env, "models:/claim-triage/2", free_port(), wait_until_ready, key=key)
    first = Server(home, full_env, "models:/claim-triage/1", free_port(), wait_until_ready, key=key)
    yield {"servers": {1: first, 2: second}, "bundles": bundles,
           "extracts": {1: (PUBLIC, SHIPPED), 2: (generated, generated_mapping)}}
    first.stop()
    second.stop()


def _raw_records(extract: Path, mapping_path: Path, rows: slice) -> tuple[list[dict], pd.DataFrame]:
    """Rows of the extract as the claims system would send them (its own columns, as text, no labels),
    and the same rows through the mapping offline."""
    records, mapped, _ = _extract_rows(extract, mapping_path, rows)
    return records, mapped


def _extract_rows(extract: Path, mapping_path: Path, rows: slice):
    """`_raw_records`, and the whole extract through the mapping: the history the service's store
    was seeded with (the version's training claims)."""
    mapping = load_mapping(mapping_path)
    whole = read_source(extract, mapping)
    raw = whole.iloc[rows].reset_index(drop=True)
    labels = [rule["column"] for rule in mapping.labels.values()]
    records = raw.drop(columns=labels).to_dict(orient="records")
    return records, apply_mapping(raw, mapping), apply_mapping(whole, mapping)


@pytest.mark.parametrize("version", [1, 2])
def test_the_model_says_which_record_shapes_it_takes_and_each_example_scores_the_same(served, version):
    server = served["servers"][version]
    shapes = server.get("/model").json()["record_shapes"]
    assert set(shapes) == {"canonical", "extract"}
    replies = [server.post("/score", shapes[shape]["example"]) for shape in ("extract", "canonical")]
    assert [r.status_code for r in replies] == [200, 200], [r.text[:500] for r in replies]
    extract, canonical = (r.json() for r in replies)
    assert extract["claim_id"] == canonical["claim_id"]
    assert extract["scores"] == canonical["scores"] and extract["decision"] == canonical["decision"]


@pytest.mark.parametrize("version", [1, 2])
def test_extract_records_answer_exactly_as_the_mapping_and_model_offline(served, version):
    server, bundle = served["servers"][version], served["bundles"][version]
    records, mapped, history = _extract_rows(*served["extracts"][version], slice(0, 40))
    # Offline: the same rows counted against the whole extract, which the store was seeded with
    # (version 2 counts history by loss date, with the policy as the person).
    offline = bundle.score(mapped, history=history)
    has_history = any(spec.source == "history" for spec in bundle.builder.specs_)
    assert has_history == (version == 2), bundle.builder.feature_names_
    one_by_one = [server.post("/score", record) for record in records[:10]]
    assert all(r.status_code == 200 for r in one_by_one), [r.text[:300] for r in one_by_one if r.status_code != 200]
    batch = server.post("/score_batch", {"claims": records, "explain": False}).json()
    assert batch["n_errors"] == 0, batch["results"][:2]
    for answers in ([r.json() for r in one_by_one], batch["results"]):
        n = len(answers)
        assert [a["claim_id"] for a in answers] == offline["claim_id"].head(n).tolist()
        assert [a["decision"] for a in answers] == offline["decision"].head(n).tolist()
        np.testing.assert_allclose([a["scores"]["fraud_probability"] for a in answers],
                                   offline["fraud_probability"].head(n), rtol=0, atol=1e-12)
        np.testing.assert_allclose([a["scores"]["anomaly_score"] for a in answers],
                                   offline["anomaly_score"].head(n), rtol=0, atol=1e-12)


def test_numbers_sent_as_json_numbers_read_as_the_extracts_text(served):
    server = served["servers"][1]
    records, _ = _raw_records(PUBLIC, SHIPPED, slice(50, 51))
    as_text = server.post("/score", records[0]).json()
    as_numbers = {k: (float(v) if "." in v else int(v)) if k in ("total_claim_amount", "policy_annual_premium",
                                                                 "witnesses", "age") else v
                  for k, v in records[0].items()}
    assert server.post("/score", as_numbers).json()["scores"] == as_text["scores"]


def test_a_bad_extract_record_is_named_by_its_own_column(served):
    server = served["servers"][1]
    records, _ = _raw_records(PUBLIC, SHIPPED, slice(60, 61))
    record = dict(records[0], incident_type="Spaceship", total_claim_amount="-5", colour="red")
    reply = server.post("/score", record)
    assert reply.status_code == 422, reply.text
    errors = {e["field"]: e for e in reply.json()["errors"]}
    assert set(errors) == {"incident_type", "total_claim_amount", "colour"}, errors
    assert errors["incident_type"]["value"] == "Spaceship" and "does not map" in errors["incident_type"]["reason"]
    assert errors["total_claim_amount"]["value"] == "-5"
    assert errors["total_claim_amount"]["reason"] == "must be greater than 0 (as claim_amount)"
    assert "not a column of the extract" in errors["colour"]["reason"]
    assert reply.json()["claim_id"] == record["policy_number"]


def test_a_batch_mixes_shapes_and_one_bad_record_fails_alone(served):
    server = served["servers"][2]
    records, _ = _raw_records(*served["extracts"][2], slice(100, 103))
    canonical = server.get("/model").json()["record_shapes"]["canonical"]["example"]
    bad = dict(records[2])
    bad[next(iter(bad))] = ""  # the claim number column left empty
    batch = server.post("/score_batch", {"claims": [records[0], canonical, bad, records[1]]}).json()
    assert [("errors" in r) for r in batch["results"]] == [False, False, True, False]
    assert batch["n_scored"] == 3 and batch["n_errors"] == 1


def test_a_case_from_an_extract_without_report_dates_or_amounts_reads_on_the_review_api(served):
    server = served["servers"][2]
    records, _ = _raw_records(*served["extracts"][2], slice(200, 230))
    answers = server.post("/score_batch", {"claims": records}).json()["results"]
    needing = next(a for a in answers if a.get("deadlines"))
    case = server.get(f"/cases/{needing['claim_id']}").json()
    assert case["decision"]["claim_id"] == needing["claim_id"]
    assert not {"report_date", "claim_amount", "claimant_id"} & set(case["claim"])
