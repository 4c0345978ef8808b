"""The monitor's report: the period's figures as one JSON-ready dict, the headline numbers for an
MLflow run, and a self-contained HTML page (inline CSS, plots as PNG data: URIs; nothing is
fetched from anywhere, so the file can be mailed or archived and still reads the same)."""

from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import asdict
from pathlib import Path

import jinja2
import matplotlib

matplotlib.use("Agg")  # files only: no display on a scheduler's machine
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

from models.policy import OUTCOMES  # noqa: E402

DECISION_COLOURS = {"AUTO_APPROVE": "#2e7d32", "STANDARD_REVIEW": "#1565c0", "ENHANCED_REVIEW": "#ef6c00",
                    "SIU_REFERRAL": "#c62828"}
SHOWN_DRIFT_ROWS = 20


def figures(period: dict, model_versions: list[str], quality: dict, indicators: dict, drift: dict,
            alerts: list) -> dict:
    """Everything the report shows, as plain JSON-ready values."""
    return {"period": period, "model_versions": model_versions, "indicators": indicators, "quality": quality,
            "drift": drift, "alerts": [a.as_dict() for a in alerts]}


def drift_section(rows: list, version: str | None, note: str | None = None) -> dict:
    """The drift rows (most drifted first) as plain values, or why there are none."""
    return {"version": version, "rows": [asdict(row) for row in rows], "note": note}


def as_json(figures: dict) -> str:
    """The figures as JSON: missing numbers (NaN) as null, times as ISO text."""
    return json.dumps(_finite(figures), indent=2, default=str)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def headline_metrics(figures: dict) -> dict[str, float]:
    """The numbers worth a chart across weekly runs (MLflow metrics); figures not computed are left out."""
    q, ind = figures["quality"], figures["indicators"]
    deadlines = ind["deadlines"]
    candidates = {
        "claims_decided": figures["period"]["claims_decided"],
        "share_automatic": ind["share_automatic"],
        "time_to_decision_median_hours": ind["time_to_decision"]["median_hours"],
        "time_to_decision_p90_hours": ind["time_to_decision"]["p90_hours"],
        "responded_in_time_share": deadlines["responded_in_time"]["share"],
        "resolved_in_time_share": deadlines["resolved_in_time"]["share"],
        "overdue_cases_now": deadlines["overdue_now"],
        "approval_precision": q["approval_precision"]["value"],
        "approval_precision_low": q["approval_precision"].get("low"),
        "expected_approval_precision": q["expected"]["approval_precision"],
        "referrals_confirmed_share": q["referrals_confirmed"]["value"],
        "expected_referrals_fraud_share": q["expected"]["referrals_fraud_share"],
        "fraud_roc_auc": q["fraud_scores"].get("roc_auc"),
        "fraud_pr_auc": q["fraud_scores"].get("pr_auc"),
        "fraud_brier": q["fraud_scores"].get("brier"),
        "labelled_share": q["label_delay"]["labelled_share"],
        "label_delay_median_hours": q["label_delay"]["median_hours"],
        "max_psi": max((r["psi"] for r in figures["drift"]["rows"] if r.get("psi") is not None), default=None),
        "alerts": len(figures["alerts"]),
    }
    return {k: float(v) for k, v in candidates.items() if v is not None and math.isfinite(float(v))}


def render_html(figures: dict) -> str:
    """The report page, its plots drawn from the figures."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v, digits=1: "—" if v is None else f"{v:.{digits}%}"
    env.filters["num"] = lambda v, digits=1: "—" if v is None else f"{v:,.{digits}f}"
    plots = {"mix": _mix_plot(figures["indicators"]["decision_mix"]),
             "reliability": _reliability_plot(figures["quality"]["fraud_scores"].get("reliability", [])),
             "drift": _drift_plot(figures["drift"]["rows"])}
    return env.get_template("report.html").render(f=figures, plots=plots, outcomes=OUTCOMES,
                                                  shown_drift_rows=SHOWN_DRIFT_ROWS, figures_json=as_json(figures))


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _mix_plot(mix: dict) -> str | None:
    rows = mix["rows"]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 3))
    bottom = [0] * len(rows)
    labels = [r["period"] for r in rows]
    for decision in OUTCOMES:
        counts = [r[decision] for r in rows]
        ax.bar(labels, counts, bottom=bottom, label=decision, color=DECISION_COLOURS[decision])
        bottom = [b + c for b, c in zip(bottom, counts)]
    ax.set_ylabel(f"claims per {mix['by']}")
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    return _png(fig)


def _reliability_plot(curve: list[dict]) -> str | None:
    if not curve:
        return None
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", label="perfectly calibrated")
    ax.plot([b["predicted"] for b in curve], [b["observed"] for b in curve], marker="o", label="labelled claims")
    ax.set_xlabel("mean fraud probability")
    ax.set_ylabel("share confirmed fraud")
    ax.legend(fontsize=8)
    return _png(fig)


def _drift_plot(rows: list[dict]) -> str | None:
    shown = [r for r in rows if r.get("psi") is not None][:SHOWN_DRIFT_ROWS]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(shown) + 1))
    ax.barh([f"{r['kind']}: {r['name']}" for r in shown][::-1], [r["psi"] for r in shown][::-1], color="#6a1b9a")
    ax.set_xlabel("PSI against the training reference")
    ax.tick_params(axis="y", labelsize=8)
    return _png(fig)
