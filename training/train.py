"""One training run: validate, split by time, fit, evaluate, log to MLflow, register, promote."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import pandas as pd

from models.config import Config
from models.pyfunc import wire_format
from training import registry
from training.data import split_by_time, validate_for_training
from training.evaluate import period_metrics, save_plots
from training.fit import Progress, fit_bundle

log = logging.getLogger(__name__)
EXAMPLE_ROWS = 3


@dataclass
class TrainingResult:
    run_id: str
    version: str
    metrics: dict[str, float]
    promotion: registry.Promotion | None
    n_invalid: int


def run_training(frame: pd.DataFrame, config: Config, source: str, progress: Progress = lambda _: None,
                 promote: bool = True) -> TrainingResult:
    """Train on a claims frame and register the bundle as a new version of the registered model."""
    progress("validation")
    report = validate_for_training(frame)
    claims = report.claims.sort_values("report_date", kind="stable").reset_index(drop=True)
    split = split_by_time(claims["report_date"], config.training.validation_share, config.training.test_share)
    client = registry.configure(config)
    with mlflow.start_run() as run:
        _log_inputs(frame, report, split, config, source)
        fitted = fit_bundle(claims, split, config, progress)
        progress("evaluation")
        test = split.test
        metrics, scored = period_metrics(fitted.bundle, claims.loc[test], fitted.matrix[test],
                                         fitted.is_fraud[test], None if fitted.payable is None else fitted.payable[test])
        metrics["fraud_trees"] = float(fitted.bundle.fraud.booster.num_trees())
        if fitted.bundle.eligibility:
            metrics["eligibility_trees"] = float(fitted.bundle.eligibility.booster.num_trees())
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            for path in save_plots(fitted.bundle, scored, fitted.matrix[test], Path(tmp), config.training.seed):
                mlflow.log_artifact(str(path), artifact_path="plots")
        mlflow.log_dict(fitted.bundle.policy.describe(), "policy.json")
        mlflow.log_dict({"features": fitted.bundle.builder.feature_names_,
                         "fields": fitted.bundle.builder.fields_seen_}, "feature_spec.json")
        progress("registry")
        registry.log_evaluation_data(claims, test)
        fitted.bundle.metadata.update(run_id=run.info.run_id, trained_at=pd.Timestamp.now("UTC").isoformat(),
                                      metrics=metrics)
        example = _input_example(claims, fitted.bundle)
        version = registry.log_bundle(fitted.bundle, example, config)
    promotion = None
    if promote and registry.champion_version(client, config) is None:
        promotion = registry.promote(version, config)
    return TrainingResult(run.info.run_id, version, metrics, promotion, report.n_invalid)


def _log_inputs(frame: pd.DataFrame, report, split, config: Config, source: str) -> None:
    """Parameters, the dataset's description and the validation report."""
    params = {f"training.{k}": v for k, v in asdict(config.training).items()}
    params.update({f"targets.{k}": v for k, v in asdict(config.targets).items()})
    params.update(split.describe())
    params.update({"data.source": source, "data.rows": report.n_rows, "data.invalid_rows": report.n_invalid})
    mlflow.log_params(params)
    dataset = mlflow.data.from_pandas(frame.head(0) if len(frame) > 2_000_000 else frame, source=source,
                                      name=Path(source).name or "claims")
    mlflow.log_input(dataset, context="training")
    mlflow.log_text(report.summary(), "validation/report.txt")
    if not report.ok:
        mlflow.log_text(json.dumps(report.to_records()[:10_000]), "validation/errors.json")


def _input_example(claims: pd.DataFrame, bundle) -> pd.DataFrame:
    """A few real claims in the wire format the signature describes."""
    return wire_format(claims.head(EXAMPLE_ROWS), bundle)
