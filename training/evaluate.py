"""Evaluation on the test period: metrics beside the ground-truth oracle, and the plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import average_precision_score, brier_score_loss, precision_recall_curve, roc_auc_score, roc_curve  # noqa: E402,E501

from models.bundle import TriageBundle  # noqa: E402
from models.policy import AUTO_APPROVE, ENHANCED_REVIEW, SIU_REFERRAL  # noqa: E402
from monitoring.quality import wilson_interval  # noqa: E402

SHAP_SAMPLE = 1000
APPROVAL_INTERVAL_Z = 1.96  # the realised approval precision's two-sided 95% interval


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def period_metrics(bundle: TriageBundle, claims: pd.DataFrame, matrix: np.ndarray, is_fraud: np.ndarray,
                 payable: np.ndarray | None) -> tuple[dict[str, float], pd.DataFrame]:
    """The logged figures for one set of claims (normally the test period), and the scored frame."""
    s = bundle.model_scores(claims, matrix)
    decision = bundle.policy.decide(s.fraud, s.anomaly, s.approval, s.blocked)
    approved = decision == AUTO_APPROVE
    m = {
        "test_claims": float(len(claims)),
        "test_fraud_rate": float(is_fraud.mean()),
        "test_fraud_roc_auc": _auc(is_fraud, s.fraud),
        "test_fraud_pr_auc": float(average_precision_score(is_fraud, s.fraud)),
        "test_fraud_brier": float(brier_score_loss(is_fraud, s.fraud)),
        "test_siu_rate": float(np.mean(decision == SIU_REFERRAL)),
        "test_siu_fraud_recall": float(np.mean(decision[is_fraud] == SIU_REFERRAL)) if is_fraud.any() else 0.0,
        "test_anomaly_alert_rate": float(np.mean(decision == ENHANCED_REVIEW)),
        "test_auto_approve_rate": float(approved.mean()),
    }
    if payable is not None:
        m["test_approval_roc_auc"] = _auc(payable, s.approval)
        m["test_approval_brier"] = float(brier_score_loss(payable, s.approval))
        m.update(approval_metrics(approved, payable, bundle.policy.thresholds_.auto_approve_drift_margin))
    alert = s.anomaly > bundle.policy.thresholds_.anomaly_percentile
    # Every claim above the anomaly cut-off, whatever else decided it: the rate the target is set for
    # (test_anomaly_alert_rate counts only the claims whose final outcome is the alert).
    m["test_anomaly_flag_rate"] = float(alert.mean())
    if "is_injected_anomaly" in claims.columns:
        injected = claims["is_injected_anomaly"].to_numpy(dtype=bool)
        m["test_anomaly_recall"] = float(alert[injected].mean()) if injected.any() else float("nan")
    m.update(oracle_metrics(claims, is_fraud, payable))
    scored = pd.DataFrame({"is_fraud": is_fraud, "fraud_probability": s.fraud, "anomaly_score": s.anomaly,
                           "decision": decision}, index=claims.index)
    if payable is not None:
        scored["payable"], scored["approval_probability"] = payable, s.approval
    return m, scored


def approval_metrics(approved: np.ndarray, payable: np.ndarray, drift_margin: float) -> dict[str, float]:
    """The promise of automatic approval as realised: how many were approved, the share of them payable
    as filed and not fraud with its two-sided 95% Wilson interval (on a few thousand approvals the
    share moves by chance by a few tenths of a point), and the margin the policy's target was raised by."""
    n, hits = int(approved.sum()), int(payable[approved].sum())
    low, high = wilson_interval(hits, n, APPROVAL_INTERVAL_Z) if n else (float("nan"), float("nan"))
    return {"test_auto_approved": float(n), "test_auto_approve_precision": hits / n if n else float("nan"),
            "test_auto_approve_precision_low": low, "test_auto_approve_precision_high": high,
            "auto_approve_drift_margin": float(drift_margin)}


def oracle_metrics(claims: pd.DataFrame, is_fraud: np.ndarray, payable: np.ndarray | None) -> dict[str, float]:
    """The same figures computed from the generator's true probabilities: the best any model could do."""
    m = {}
    if "true_fraud_prob" in claims.columns:
        truth = claims["true_fraud_prob"].to_numpy(dtype=float)
        m["oracle_fraud_roc_auc"] = _auc(is_fraud, truth)
        m["oracle_fraud_pr_auc"] = float(average_precision_score(is_fraud, truth))
        m["oracle_fraud_brier"] = float(brier_score_loss(is_fraud, truth))
    if "true_paid_as_filed_prob" in claims.columns and payable is not None:
        m["oracle_approval_roc_auc"] = _auc(payable, claims["true_paid_as_filed_prob"].to_numpy(dtype=float))
    return m


def save_plots(bundle: TriageBundle, scored: pd.DataFrame, matrix: np.ndarray, out: Path, seed: int = 0) -> list[Path]:
    """ROC, precision-recall, reliability and SHAP summary plots as PNG files in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    models = [("fraud", "is_fraud", "fraud_probability")]
    if "payable" in scored:
        models.append(("approval", "payable", "approval_probability"))
    paths = [_curves(scored, models, out), _reliability(scored, models, out)]
    rng = np.random.default_rng(seed)
    sample = matrix[rng.choice(len(matrix), size=min(SHAP_SAMPLE, len(matrix)), replace=False)]
    paths += _shap_summaries(bundle, sample, out)
    return paths


def _curves(scored: pd.DataFrame, models, out: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, label, score in models:
        y, p = scored[label].to_numpy(), scored[score].to_numpy()
        fpr, tpr, _ = roc_curve(y, p)
        axes[0].plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, p):.3f})")
        precision, recall, _ = precision_recall_curve(y, p)
        axes[1].plot(recall, precision, label=f"{name} (AP {average_precision_score(y, p):.3f})")
    axes[0].plot([0, 1], [0, 1], ls=":", c="grey")
    axes[0].set(title="ROC, test period", xlabel="false positive rate", ylabel="true positive rate")
    axes[1].set(title="Precision-recall, test period", xlabel="recall", ylabel="precision")
    for ax in axes:
        ax.legend(loc="best")
    return _save(fig, out / "roc_pr.png")


def _reliability(scored: pd.DataFrame, models, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, label, score in models:
        observed, predicted = calibration_curve(scored[label], scored[score], n_bins=15, strategy="quantile")
        ax.plot(predicted, observed, marker="o", label=name)
    ax.plot([0, 1], [0, 1], ls=":", c="grey", label="perfectly calibrated")
    ax.set(title="Reliability, test period", xlabel="predicted probability", ylabel="observed rate",
           xscale="symlog", yscale="symlog")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_yscale("symlog", linthresh=0.01)
    ax.legend(loc="best")
    return _save(fig, out / "calibration.png")


def _shap_summaries(bundle: TriageBundle, sample: np.ndarray, out: Path) -> list[Path]:
    import shap

    names = bundle.builder.feature_names_
    paths = []
    boosted = [("fraud", bundle.fraud)] + ([("eligibility", bundle.eligibility)] if bundle.eligibility else [])
    for name, model in boosted:
        contributions = model.booster.predict(sample, pred_contrib=True)[:, :-1]
        paths.append(_shap_plot(shap, contributions, sample, names, f"SHAP: {name} model", out / f"shap_{name}.png"))
    detector = bundle.anomaly
    if hasattr(detector, "forest_"):
        inputs = detector.prepare(sample[:300])
        values = shap.TreeExplainer(detector.forest_).shap_values(inputs)
    else:  # the tail detector is additive: its own terms are its SHAP values, shown against what it reads
        inputs = detector.input_values(sample)
        values = detector.contributions(sample)[:, detector.columns]
    anomaly_names = [names[i] for i in detector.columns]
    paths.append(_shap_plot(shap, values, inputs, anomaly_names, "SHAP: anomaly detector", out / "shap_anomaly.png"))
    return paths


def _shap_plot(shap, values, inputs, names, title: str, path: Path) -> Path:
    shap.summary_plot(values, inputs, feature_names=names, show=False, max_display=15)
    fig = plt.gcf()
    fig.suptitle(title)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
