"""The data scientist's first notebook runs against a real registry, so it cannot rot."""

import os
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from training.generate import generate_claims
from training.train import run_training

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "01_claims_and_champion.ipynb"


def test_notebook_runs_against_the_champion(tmp_path, mlflow_home):
    # The notebook reads the champion's held-out test figures, never cross-validation's: none is run.
    config = replace(mlflow_home, training=replace(mlflow_home.training, cv_below_rows=0))
    result = run_training(generate_claims(4_000, seed=4), config, source="fixture")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "commit the notebook with its outputs cleared"
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                   env=dict(os.environ)).execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"champion: claim-triage version {result.version}, run {result.run_id}" in text
    assert "4,000 claims" in text or "claims from" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4, f"expected the distribution, evaluation and SHAP plots, got {len(images)} images"
    tables = "\n".join(o["data"].get("text/plain", "") for o in outputs if "data" in o)
    assert "fraud_roc_auc" in tables
