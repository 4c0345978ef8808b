"""Alerts: the monitor's figures against the thresholds in `[monitoring]` and the decision targets.

Each alert names the figure, its value and the threshold it crossed, so whoever is paged knows
what to look at. Quality alerts wait for `min_labels` labelled claims (`quality.share` gives no
value below it), so a quiet week with three outcomes never pages anyone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from models.config import DecisionTargets, MonitoringConfig

# The exit code of `claimtriage monitor` when any alert fires (0: none; 2: a usage error), for schedulers.
ALERT_EXIT_CODE = 3
# Every kind of alert there is (Alert.name), for those who count them (the service's /metrics).
ALERT_NAMES = ("drift", "approval_precision", "overdue_cases")


@dataclass(frozen=True)
class Alert:
    name: str
    message: str

    def as_dict(self) -> dict:
        return asdict(self)


def drift_alerts(rows: list, settings: MonitoringConfig) -> list[Alert]:
    """PSI above the threshold on a score, or on a feature among the model's most important; only
    over at least `min_drift_claims` claims. On fewer, PSI moves by chance, most for features that
    are one value per provider or person (their claims move together): an unshifted month of 161
    claims after a small generated book showed a provider's claims in 365 days at PSI 0.36 against
    its reference, while 939 claims of a larger book showed 0.16 (its real trend: the book grows)."""
    if not rows or rows[0].n < settings.min_drift_claims:
        return []
    return [Alert("drift", f"{row.kind} {row.name}: PSI {row.psi:.3f} above {settings.psi_alert}"
                           + (f" (feature importance rank {row.importance_rank})" if row.kind == "feature" else ""))
            for row in rows
            if row.psi is not None and row.psi > settings.psi_alert
            and (row.kind == "score" or (row.importance_rank is not None
                                         and row.importance_rank <= settings.psi_alert_top_features))]


def quality_alerts(quality: dict, targets: DecisionTargets) -> list[Alert]:
    """Automatic approvals whose realised precision is, with confidence, below the target."""
    precision = quality["approval_precision"]
    if precision["value"] is None or precision["low"] >= targets.auto_approve_precision:
        return []
    return [Alert("approval_precision",
                  f"automatic approvals' precision {precision['value']:.2%} ({precision['hits']} of "
                  f"{precision['n']} labelled), lower bound {precision['low']:.2%} below the target "
                  f"{targets.auto_approve_precision:.2%}")]


def overdue_alerts(indicators: dict, settings: MonitoringConfig) -> list[Alert]:
    n = indicators["deadlines"]["overdue_now"]
    if n <= settings.max_overdue_cases:
        return []
    return [Alert("overdue_cases", f"{n} review cases are past a deadline now (more than "
                                   f"{settings.max_overdue_cases} allowed)")]


def alerts(quality: dict, indicators: dict, drift_rows: list, settings: MonitoringConfig,
           targets: DecisionTargets) -> list[Alert]:
    """Every alert the period raises, drift first (the most drifted first, as the rows come)."""
    return (drift_alerts(drift_rows, settings) + quality_alerts(quality, targets)
            + overdue_alerts(indicators, settings))
