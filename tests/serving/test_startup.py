"""A service that cannot start says why on one line and exits non-zero, instead of restarting for ever."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def test_serve_names_a_missing_version_on_one_line_and_exits(mlflow_home, capsys):
    assert main(["serve", "--model", "models:/claim-triage/9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("claimtriage serve: cannot start: no model version at models:/claim-triage/9")
    assert "not found" in err


@pytest.mark.slow
def test_a_worker_that_cannot_load_its_model_stops_the_server_with_an_error(mlflow_home, tmp_path):
    env = {**os.environ, "CLAIMTRIAGE_MODEL_URI": "models:/claim-triage/9", "BENTOML_DO_NOT_TRACK": "true",
           "BENTOML_HOME": str(tmp_path / "bentoml"), "CLAIMTRIAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"}
    server = subprocess.run(
        [sys.executable, "-m", "bentoml", "serve", "serving.service:ClaimTriage", "--host", "127.0.0.1",
         "--port", "0", "--working-dir", str(ROOT)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert server.returncode != 0
    reasons = [line for line in (server.stdout + server.stderr).splitlines() if "claim-triage cannot start:" in line]
    assert len(reasons) == 1 and "models:/claim-triage/9" in reasons[0], server.stdout[-3000:]
