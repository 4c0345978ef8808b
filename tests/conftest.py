"""Shared fixtures: small generated claims and an isolated MLflow home per test."""

from __future__ import annotations

import pandas as pd
import pytest

from models.config import load_config


@pytest.fixture(scope="session")
def generated_claims() -> pd.DataFrame:
    """20,000 synthetic claims (seed 7), shared read-only across tests: copy before changing."""
    from training.generate import generate_claims

    return generate_claims(20_000, seed=7)


@pytest.fixture(scope="session")
def typed_claims(generated_claims) -> pd.DataFrame:
    """The generated claims after validation: canonical dtypes, sorted by report time."""
    from features.validation import validate_claims

    report = validate_claims(generated_claims, require_labels=True)
    assert report.ok, report.summary()
    return report.claims.sort_values("report_date", kind="stable").reset_index(drop=True)


@pytest.fixture
def mlflow_home(tmp_path, monkeypatch):
    """A private working directory with its own SQLite tracking store and registry."""
    monkeypatch.setenv("CLAIMTRIAGE_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.chdir(tmp_path)
    return load_config()


@pytest.fixture
def few_folds(mlflow_home, tmp_path):
    """`mlflow_home` whose claimtriage.toml (read by the CLI too) cross-validates with 2 folds, once.

    Small data is evaluated by repeated k-fold, 15 fits by default; where a test is about something
    else, two folds once take the same code path in a fifth of the time."""
    (tmp_path / "claimtriage.toml").write_text("[training]\ncv_folds = 2\ncv_repeats = 1\n")
    config = load_config()
    assert (config.training.cv_folds, config.training.cv_repeats) == (2, 1)
    return config


@pytest.fixture(scope="session")
def fitted_run(typed_claims):
    """A bundle fitted on the 20,000 generated claims (no MLflow), with its split and matrix."""
    from models.config import Config
    from training.data import split_claims
    from training.fit import fit_bundle

    config = Config()
    split = split_claims(typed_claims, 0.15, 0.15, 0)
    return fit_bundle(typed_claims, split, config)
