"""One training run: validate, split by time, fit, evaluate, log to MLflow, register, promote."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from models.config import Config
from models.pyfunc import wire_format
from monitoring.profile import log_profile, profile_claims
from training import registry
from features.schema import ClaimField
from training.data import Split, claim_times, cross_validation_splits, split_claims, validate_for_training
from training.evaluate import period_metrics, save_plots
from training.fit import Extras, Progress, fit_bundle

log = logging.getLogger(__name__)
EXAMPLE_ROWS = 3


@dataclass
class TrainingResult:
    run_id: str
    version: str
    metrics: dict[str, float]
    promotion: registry.Promotion | None
    n_invalid: int
    notes: list[str]



def graph_summary(builder) -> dict:
    """How the claim graph linked the training claims: its settings and the identities ignored."""
    settings = builder.graph_settings
    return {"link_fields": list(settings.link_fields), "max_claims_per_identity": settings.max_claims_per_identity,
            "placeholders": list(settings.placeholders),
            "ignored": builder.graph_report_.as_dict() if hasattr(builder, "graph_report_") else None}


def graph_metrics(builder) -> dict[str, float]:
    """The identities that linked nothing in the training claims, as run metrics."""
    report = getattr(builder, "graph_report_", None)
    if report is None:
        return {}
    return {"graph_placeholder_values": float(report.placeholder_values),
            "graph_over_shared_links": float(report.over_shared_links),
            "graph_over_shared_values": float(sum(report.over_shared_values.values()))}

def run_training(frame: pd.DataFrame, config: Config, source: str, progress: Progress = lambda _: None,
                 promote: bool = True, extras: Extras = Extras(), partial: bool = False,
                 mapping: dict | None = None, source_notes: list[str] = (),
                 engine: dict | None = None) -> TrainingResult:
    """Train on a claims frame and register the bundle as a new version of the registered model.

    `partial`: the frame came through a dataset mapping, so canonical fields it lacks are absent
    (their features are left out) rather than missing. `mapping`: that mapping as the version
    carries it (`training.from_mapping.carried_mapping`), so the service takes the extract's own records;
    `source_notes`, what the mapping changed on purpose, are said with the run's own notes. `engine`:
    what built the frame when not this process (`bulk.spark_training`: the book, the sample), logged
    as the run's `engine.*` parameters.
    """
    progress("validation")
    report = validate_for_training(frame, partial, extra_fields(frame, extras))
    claims = _ordered(report.claims)
    cfg = config.training
    split = split_claims(claims, cfg.validation_share, cfg.test_share, cfg.seed)
    notes = list(source_notes) + _notes(claims, split, cfg)
    client = registry.configure(config)
    with mlflow.start_run() as run:
        _log_inputs(frame, report, split, config, source, extras)
        mlflow.log_params({f"engine.{k}": v for k, v in (engine or {"engine": "local"}).items()})
        for note in notes:
            log.warning(note)
        mlflow.set_tag("notes", "\n".join(notes))
        metrics = {}
        if len(claims) < cfg.cv_below_rows:
            progress("cross-validation")
            metrics.update(cross_validate(claims, config, extras))
        fitted = fit_bundle(claims, split, config, progress, extras)
        left_out = dropped_notes(fitted.bundle.builder)
        if left_out:
            notes += left_out
            mlflow.set_tag("notes", "\n".join(notes))
        progress("evaluation")
        metrics.update(_evaluate_and_plot(fitted, claims, config))
        mlflow.log_metrics(metrics)
        mlflow.log_dict(fitted.bundle.policy.describe(), "policy.json")
        mlflow.log_dict({"features": fitted.bundle.builder.feature_names_,
                         "fields": [f.name for f in fitted.bundle.claim_fields],
                         "left_out": getattr(fitted.bundle.builder, "dropped_features_", {}),
                         "graph": graph_summary(fitted.bundle.builder)}, "feature_spec.json")
        mlflow.log_metrics(graph_metrics(fitted.bundle.builder))
        progress("registry")
        registry.log_evaluation_data(claims, split.test)
        log_reference_profile(client, run.info.run_id, fitted, claims)
        if mapping is not None:
            fitted.bundle.mapping = mapping
            mlflow.log_dict(mapping["rules"], "mapping/mapping.yaml")
        fitted.bundle.metadata.update(run_id=run.info.run_id, trained_at=pd.Timestamp.now("UTC").isoformat(),
                                      metrics=metrics, source=source, notes=notes)
        version = registry.log_bundle(fitted.bundle, _input_example(claims, fitted.bundle), config)
    promotion = None
    if promote and registry.champion_version(client, config) is None:
        promotion = registry.promote(version, config)
    return TrainingResult(run.info.run_id, version, metrics, promotion, report.n_invalid, notes)


def log_reference_profile(client, run_id: str, fitted, claims: pd.DataFrame) -> None:
    """Keep the profile live claims are compared with (monitoring/profile.py): the test period, where
    the version's quality was measured, unseen by the fit (training claims' scores are flattered by
    it) and the newest before deployment. A book that grows moves its history counts month by month
    (a provider's claims in 365 days): against the validation and test periods together, an unshifted
    month after a two-year generated book showed provider_claims_365d at PSI 0.38; against the test
    period, the nearest one, such trends weigh least and real shifts still stand out."""
    held_out = fitted.split.test
    about = {"run_id": run_id, "reference": "test period of the training claims"}
    log_profile(client, run_id, profile_claims(fitted.bundle, claims.loc[held_out], about,
                                               matrix=fitted.matrix[held_out], seed=fitted.bundle.builder.random_state))


def dropped_notes(builder) -> list[str]:
    """The features training left out for a reason the data gave (constant, or dates too coarse), in
    words; features whose fields the extract lacks are implied by the mapping and listed in
    feature_spec.json with the rest."""
    return [f"feature {name} left out: {reason}" for name, reason in getattr(builder, "dropped_features_", {}).items()
            if not reason.startswith("no training claim has")]


def extra_fields(frame: pd.DataFrame, extras: Extras) -> tuple[ClaimField, ...]:
    """Schema entries for the passed-through columns, so they are validated like any field."""
    missing = [c for c in extras.categorical + extras.numeric if c not in frame.columns]
    if missing:
        raise ValueError(f"extra feature columns not in the data: {', '.join(missing)}")
    return tuple(ClaimField(c, "string", False, f"Extra categorical feature {c}.") for c in extras.categorical) + \
        tuple(ClaimField(c, "number", False, f"Extra numeric feature {c}.") for c in extras.numeric)


def _ordered(claims: pd.DataFrame) -> pd.DataFrame:
    times = claim_times(claims)
    if times is None:
        return claims.reset_index(drop=True)
    return claims.sort_values(times[0], kind="stable").reset_index(drop=True)


def _notes(claims: pd.DataFrame, split: Split, cfg) -> list[str]:
    """What a data scientist must know about how this run was judged, in words."""
    notes = []
    if split.kind == "stratified":
        notes.append("the claims carry no dates: split by stratified random sampling, not by time")
    elif split.detail.get("split_on") == "loss_date":
        notes.append("no report dates: split by loss date, and history counted by loss date")
    if "claimant_id" not in claims.columns and "policy_id" in claims.columns:
        notes.append("no claimant ids: the policy stands in as the person in the history features")
    if len(claims) < cfg.cv_below_rows:
        notes.append(f"{len(claims):,} claims (< {cfg.cv_below_rows:,}): evaluated by {cfg.cv_repeats}x repeated "
                     f"stratified {cfg.cv_folds}-fold cross-validation (cv_*_mean, cv_*_std)")
    if "paid_as_filed" not in claims.columns:
        notes.append("no paid_as_filed label: no eligibility model, so the policy never auto-approves")
    return notes


def cross_validate(claims: pd.DataFrame, config: Config, extras: Extras) -> dict[str, float]:
    """Mean and spread of every test metric over repeated stratified k-fold; each fold logged as a step."""
    cfg = config.training
    per_fold: dict[str, list[float]] = {}
    for k, split in enumerate(cross_validation_splits(claims, cfg.cv_folds, cfg.cv_repeats, cfg.validation_share,
                                                      cfg.seed)):
        fitted = fit_bundle(claims, split, config, extras=extras)
        metrics, _ = _test_metrics(fitted, claims)
        for name, value in metrics.items():
            key = "cv_" + name.removeprefix("test_")
            per_fold.setdefault(key, []).append(value)
            mlflow.log_metric(key, value, step=k)
    out = {}
    for key, values in per_fold.items():
        out[f"{key}_mean"] = float(np.nanmean(values))
        out[f"{key}_std"] = float(np.nanstd(values))
    return out


def _test_metrics(fitted, claims: pd.DataFrame):
    test = fitted.split.test
    payable = None if fitted.payable is None else fitted.payable[test]
    return period_metrics(fitted.bundle, claims.loc[test], fitted.matrix[test], fitted.is_fraud[test], payable)


def _evaluate_and_plot(fitted, claims: pd.DataFrame, config: Config) -> dict[str, float]:
    metrics, scored = _test_metrics(fitted, claims)
    metrics["fraud_trees"] = float(fitted.bundle.fraud.booster.num_trees())
    if fitted.bundle.eligibility:
        metrics["eligibility_trees"] = float(fitted.bundle.eligibility.booster.num_trees())
    with tempfile.TemporaryDirectory() as tmp:
        test = fitted.split.test
        for path in save_plots(fitted.bundle, scored, fitted.matrix[test], Path(tmp), config.training.seed):
            mlflow.log_artifact(str(path), artifact_path="plots")
    return metrics


def _log_inputs(frame: pd.DataFrame, report, split, config: Config, source: str, extras: Extras) -> None:
    """Parameters, the dataset's description and the validation report."""
    params = {f"training.{k}": v for k, v in asdict(config.training).items()}
    params.update({f"targets.{k}": v for k, v in asdict(config.targets).items()})
    params.update(split.describe())
    params.update({"data.source": source, "data.rows": report.n_rows, "data.invalid_rows": report.n_invalid,
                   "data.extra_categorical": ",".join(extras.categorical) or "-",
                   "data.extra_numeric": ",".join(extras.numeric) or "-",
                   "evaluation": "cv" if report.n_rows < config.training.cv_below_rows else "holdout"})
    mlflow.log_params(params)
    # MLflow resolves a dataset source only for locations it knows (paths, URLs); generated claims
    # have none, so their description ("synthetic:N:seedS") becomes the dataset's name instead.
    location = source if Path(source).exists() else None
    dataset = mlflow.data.from_pandas(frame.head(0) if len(frame) > 2_000_000 else frame, source=location,
                                      name=Path(source).name if location else source.replace(":", "-"))
    mlflow.log_input(dataset, context="training")
    mlflow.log_text(report.summary(), "validation/report.txt")
    if not report.ok:
        mlflow.log_text(json.dumps(report.to_records()[:10_000]), "validation/errors.json")


def _input_example(claims: pd.DataFrame, bundle) -> pd.DataFrame:
    """A few real claims in the wire format the signature describes."""
    return wire_format(claims.head(EXAMPLE_ROWS), bundle)
