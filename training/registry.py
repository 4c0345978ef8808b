"""MLflow: the tracking store, logging the bundle as a registered version, and champion promotion."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version as installed_version
from pathlib import Path

import joblib
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from models.bundle import TriageBundle
from models.config import Config
from models.pyfunc import BUNDLE_ARTIFACT, load_bundle, signature

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
EVALUATION_DIR = "evaluation"
EVALUATION_FILE = "claims.parquet"
# What "not worse" is judged on when a candidate challenges the champion.
PROMOTION_METRICS = ("fraud_roc_auc", "fraud_pr_auc", "approval_roc_auc")
_RUNTIME_PACKAGES = ("mlflow", "lightgbm", "scikit-learn", "pandas", "numpy", "pyarrow", "joblib", "shap")


class PromotionError(RuntimeError):
    """A promotion that was refused, with the comparison that refused it."""


def configure(config: Config) -> MlflowClient:
    """Point MLflow at the configured store and make sure the experiment exists."""
    mlflow.set_tracking_uri(config.tracking_uri)
    mlflow.set_registry_uri(config.tracking_uri)
    if mlflow.get_experiment_by_name(config.registry.experiment) is None:
        local = config.tracking_uri.startswith("sqlite:") or config.tracking_uri.startswith("file:")
        mlflow.create_experiment(config.registry.experiment,
                                 artifact_location=config.artifact_location if local else None)
    mlflow.set_experiment(config.registry.experiment)
    return MlflowClient()


def log_bundle(bundle: TriageBundle, example: pd.DataFrame, config: Config) -> str:
    """Log the bundle as the run's pyfunc model and register it; returns the new version number."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bundle.joblib"
        joblib.dump(bundle, path)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PROJECT_ROOT / "models" / "mlflow_entry.py"),
            artifacts={BUNDLE_ARTIFACT: str(path)},
            code_paths=[str(PROJECT_ROOT / "features"), str(PROJECT_ROOT / "models")],
            signature=signature(bundle),
            input_example=example,
            pip_requirements=[f"{p}=={installed_version(p)}" for p in _RUNTIME_PACKAGES],
            registered_model_name=config.registry.model_name,
        )
    return str(info.registered_model_version)


def log_evaluation_data(claims: pd.DataFrame, test_mask: np.ndarray) -> None:
    """Keep the claims a version was judged on, so a later challenger is compared on the same."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / EVALUATION_FILE
        claims.assign(in_test=test_mask).to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=EVALUATION_DIR)


def champion_version(client: MlflowClient, config: Config):
    """The version the champion alias points to, or None."""
    try:
        return client.get_model_version_by_alias(config.registry.model_name, config.registry.champion_alias)
    except MlflowException:
        return None


@dataclass
class Promotion:
    version: str
    previous: str | None
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float]
    forced: bool

    def summary(self) -> str:
        if self.previous is None:
            return f"version {self.version} is the first champion"
        rows = [f"  {k}: candidate {self.candidate_metrics[k]:.4f} vs champion {self.champion_metrics[k]:.4f}"
                for k in self.candidate_metrics]
        word = "forced to champion" if self.forced else "promoted to champion"
        return f"version {self.version} {word} (was version {self.previous}):\n" + "\n".join(rows)


def promote(version: str, config: Config, force: bool = False, reason: str = "") -> Promotion:
    """Move the champion alias to `version` unless it is worse than the champion on the same test claims."""
    client = configure(config)
    name, alias = config.registry.model_name, config.registry.champion_alias
    try:
        candidate = client.get_model_version(name, str(version))
    except MlflowException as err:
        raise PromotionError(f"{name} has no version {version}") from err
    current = champion_version(client, config)
    if current is None or str(current.version) == str(candidate.version):
        result = Promotion(str(candidate.version), None, {}, {}, False)
    else:
        result, worse = judge(client, config, candidate, current)
        if worse and not force:
            raise PromotionError(f"version {candidate.version} is worse than champion version {current.version} "
                                 f"on {', '.join(worse)} (use --force to promote anyway):\n"
                                 + "\n".join(result.summary().splitlines()[1:]))
    client.set_registered_model_alias(name, alias, candidate.version)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    client.set_model_version_tag(name, candidate.version, "promoted_at", stamp)
    client.set_model_version_tag(name, candidate.version, "promotion", json.dumps(
        {"previous": result.previous, "candidate": result.candidate_metrics, "champion": result.champion_metrics}))
    if force:
        client.set_model_version_tag(name, candidate.version, "forced", reason or "forced without a reason")
    return result


def judge(client: MlflowClient, config: Config, candidate, current) -> tuple[Promotion, list[str]]:
    """The promotion gate: candidate and champion versions scored on the candidate's own test claims;
    with the metrics on which the candidate is worse beyond the tolerance."""
    name = config.registry.model_name
    claims = _evaluation_claims(client, candidate.run_id)
    ours = compare_metrics(load_bundle(f"models:/{name}/{candidate.version}"), claims)
    theirs = compare_metrics(load_bundle(f"models:/{name}/{current.version}"), claims)
    shared = [k for k in ours if k in theirs]
    worse = [k for k in shared if ours[k] < theirs[k] - config.registry.promotion_tolerance]
    return Promotion(str(candidate.version), str(current.version), {k: ours[k] for k in shared},
                     {k: theirs[k] for k in shared}, forced=bool(worse)), worse


def registered_version(client: MlflowClient, config: Config, version: str):
    """A registered version of the model, or an error naming the versions and aliases there are."""
    name = config.registry.model_name
    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        raise PromotionError(f"{name} has no version {version}; {what_is_registered(client, config)}") from None


def what_is_registered(client: MlflowClient, config: Config) -> str:
    """The model's versions and aliases, in words, for errors that must say what exists."""
    name = config.registry.model_name
    versions = sorted((str(v.version) for v in client.search_model_versions(f"name='{name}'")), key=int)
    if not versions:
        return f"{name} has no versions yet"
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException:
        aliases = {}
    named = ", ".join(f"{alias} -> {v}" for alias, v in sorted(aliases.items())) or "none"
    return f"versions: {', '.join(versions)}; aliases: {named}"


def point_challenger(version: str, config: Config) -> None:
    """Point the challenger alias at `version`, so the service scores it in the champion's shadow;
    the champion alias is never touched here (only `promote` moves it, through the gate)."""
    client = configure(config)
    candidate = registered_version(client, config, version)
    client.set_registered_model_alias(config.registry.model_name, config.registry.challenger_alias,
                                      candidate.version)


def challenge(version: str, config: Config) -> tuple[Promotion, list[str]] | None:
    """The gate's comparison of `version` with the champion, moving no alias; None without a champion
    (or when `version` is the champion)."""
    client = configure(config)
    candidate = registered_version(client, config, version)
    current = champion_version(client, config)
    if current is None or str(current.version) == str(candidate.version):
        return None
    return judge(client, config, candidate, current)


def _evaluation_claims(client: MlflowClient, run_id: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, f"{EVALUATION_DIR}/{EVALUATION_FILE}", tmp)
        return pd.read_parquet(local)


def compare_metrics(bundle: TriageBundle, claims: pd.DataFrame) -> dict[str, float]:
    """Ranking quality of a bundle on the test claims of an evaluation set (history: all its claims)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    test = claims.loc[claims["in_test"].to_numpy(dtype=bool)]
    scored = bundle.score(test, history=claims)
    fraud = test["is_fraud"].to_numpy(dtype=bool)
    out = {"fraud_roc_auc": float(roc_auc_score(fraud, scored["fraud_probability"])),
           "fraud_pr_auc": float(average_precision_score(fraud, scored["fraud_probability"]))}
    if bundle.eligibility is not None and "paid_as_filed" in test.columns and test["paid_as_filed"].notna().all():
        payable = test["paid_as_filed"].to_numpy(dtype=bool) & ~fraud
        out["approval_roc_auc"] = float(roc_auc_score(payable, scored["approval_probability"]))
    return out
