"""The README's main job on an empty registry: `claimtriage serve` trains a champion, then serves it."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest
from mlflow import MlflowClient

from features.schema import CLAIM_FIELDS
from models.policy import OUTCOMES
from training.generate import generate_claims

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# The champion trained on the empty registry: few claims, held-out evaluation only (no cross-validation),
# since what is tested is that one is trained and served, not how good it is.
SYNTHETIC = 3_000


def test_serve_on_an_empty_registry_trains_a_synthetic_champion_then_answers(tmp_path, mlflow_home, free_port,
                                                                             wait_until_ready):
    port = free_port()
    config = tmp_path / "claimtriage.toml"
    config.write_text(f"[training]\ncv_below_rows = 0\n[serving]\nsynthetic_claims_if_no_champion = {SYNTHETIC}\n")
    env = {**os.environ, "CLAIMTRIAGE_HOME": str(tmp_path), "CLAIMTRIAGE_CONFIG": str(config),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "CLAIMTRIAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'claims.db'}",
           "BENTOML_DO_NOT_TRACK": "true", "BENTOML_HOME": str(tmp_path / "bentoml")}
    log = tmp_path / "serve.log"
    server = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", str(port)],
                              cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(server, base, log, seconds=300)

        printed = log.read_text()
        assert "no champion in the registry" in printed
        key = printed.split("API key (Authorization: Bearer ...): ")[1].split()[0]
        assert "adjusters' page login: admin / " in printed
        claim = generate_claims(100, seed=99).iloc[0]
        body = {}
        for f in CLAIM_FIELDS:
            value = claim[f.name]
            if pd.isna(value):
                continue
            if f.kind == "date":
                value = value.strftime("%Y-%m-%d")
            elif f.kind == "datetime":
                value = value.strftime("%Y-%m-%dT%H:%M:%SZ")
            body[f.name] = value.item() if hasattr(value, "item") else value
        assert httpx.post(f"{base}/score", json=body, timeout=30).status_code == 401
        reply = httpx.post(f"{base}/score", json=body, timeout=30, headers={"Authorization": f"Bearer {key}"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["decision"] in OUTCOMES and reply.json()["model_version"] == "1"

        # The champion's training run names its generated data rather than pretending it is a file.
        client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
        version = client.get_model_version_by_alias("claim-triage", "champion")
        run = client.get_run(version.run_id)
        assert run.data.params["data.source"] == f"synthetic:{SYNTHETIC}:seed0"
        assert [d.dataset.name for d in run.inputs.dataset_inputs] == [f"synthetic-{SYNTHETIC}-seed0"]
    finally:
        server.terminate()
        server.wait(timeout=30)
