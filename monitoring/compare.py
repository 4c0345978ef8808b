"""The champion and its shadow challenger on the same live claims: agreement, decision mix, quality.

Pure functions of the `pairs` frame (serving.compare_reads.shadow_pairs): one row per claim the
challenger scored, the champion's decision and scores in plain columns, the challenger's in
`challenger_` columns, and the labels of the claim's outcome (`is_fraud`, `payable`, empty until
an outcome says). Quality on labelled claims is the monitor's (monitoring.quality), figured for
each side on the same claims, so the difference is the models' and not the sample's.
"""

from __future__ import annotations

import pandas as pd

from models.policy import OUTCOMES
from monitoring.quality import approval_precision, fraud_scores

SIDES = ("champion", "challenger")
SIDE_COLUMNS = ("decision", "fraud_probability", "approval_probability")


def _decisions(values: pd.Series, side: str) -> pd.Categorical:
    """Decisions as categories in policy order; a decision the policy does not know is an error, not a
    row silently missing from the matrix."""
    unknown = sorted(set(values) - set(OUTCOMES))
    if unknown:
        raise ValueError(f"the {side}'s decisions include {', '.join(unknown)}, not one of {', '.join(OUTCOMES)}")
    return pd.Categorical(values, categories=OUTCOMES)


def agreement(pairs: pd.DataFrame) -> pd.DataFrame:
    """Confusion matrix of decisions: the champion's in rows, the challenger's in columns, counts of claims."""
    matrix = pd.crosstab(_decisions(pairs["decision"], "champion"),
                         _decisions(pairs["challenger_decision"], "challenger"), dropna=False)
    return matrix.reindex(index=list(OUTCOMES), columns=list(OUTCOMES), fill_value=0).rename_axis(
        index="champion", columns="challenger")


def decision_mix(pairs: pd.DataFrame) -> pd.DataFrame:
    """Share of claims in each decision for both, and the challenger's minus the champion's."""
    shares = {side: pd.Series(_decisions(pairs[column], side)).value_counts(normalize=True).reindex(
        list(OUTCOMES), fill_value=0.0) for side, column in zip(SIDES, ("decision", "challenger_decision"))}
    mix = pd.DataFrame(shares)
    mix["difference"] = mix["challenger"] - mix["champion"]
    return mix.rename_axis("decision")


def side(pairs: pd.DataFrame, which: str) -> pd.DataFrame:
    """One side's decisions and scores with the labels: the frame monitoring.quality figures on."""
    prefix = "challenger_" if which == "challenger" else ""
    out = pairs[[prefix + c for c in SIDE_COLUMNS] + ["is_fraud", "payable"]]
    return out.set_axis([*SIDE_COLUMNS, "is_fraud", "payable"], axis=1)


def side_quality(decided: pd.DataFrame, min_labels: int, z: float, bins: int) -> dict:
    """Fraud ranking and calibration (ROC-AUC, PR-AUC, Brier) and the automatic approvals' precision."""
    return {"fraud_scores": fraud_scores(decided, min_labels, bins),
            "approval_precision": approval_precision(decided, min_labels, z)}


def live_comparison(pairs: pd.DataFrame, min_labels: int, z: float, bins: int) -> dict:
    """Everything `claimtriage compare` reports, as plain values (its --json)."""
    matrix = agreement(pairs)
    agreed = int(sum(matrix.loc[d, d] for d in OUTCOMES))
    mix = decision_mix(pairs)
    return {
        "claims": len(pairs),
        "labelled": int(pairs["is_fraud"].notna().sum()),
        "champion_versions": sorted(pairs["model_version"].unique().tolist()),
        "challenger_version": None if pairs.empty else str(pairs["challenger_model_version"].iloc[0]),
        "first_scored_at": None if pairs.empty else pairs["scored_at"].min().isoformat(timespec="minutes"),
        "last_scored_at": None if pairs.empty else pairs["scored_at"].max().isoformat(timespec="minutes"),
        "agreement": {"share": agreed / len(pairs) if len(pairs) else None,
                      "matrix": {row: {col: int(matrix.loc[row, col]) for col in OUTCOMES} for row in OUTCOMES}},
        "decision_mix": {d: {k: float(v) for k, v in mix.loc[d].items()} for d in OUTCOMES},
        "quality": {s: side_quality(side(pairs, s), min_labels, z, bins) for s in SIDES},
    }


def summary(comparison: dict) -> str:
    """The comparison as text for a terminal: matrix, mix, quality side by side."""
    width = max(len(d) for d in OUTCOMES) + 2
    lines = [f"{comparison['claims']:,} claims scored by both (challenger version {comparison['challenger_version']}, "
             f"champion version {', '.join(comparison['champion_versions'])}), {comparison['labelled']:,} with an "
             f"outcome; decided from {comparison['first_scored_at']} to {comparison['last_scored_at']} (UTC)",
             f"agreement: {comparison['agreement']['share']:.1%} of claims get the same decision",
             "champion (rows) x challenger (columns):",
             " " * width + "".join(f"{d:>{width}}" for d in OUTCOMES)]
    for row, counts in comparison["agreement"]["matrix"].items():
        lines.append(f"{row:<{width}}" + "".join(f"{counts[col]:>{width}}" for col in OUTCOMES))
    lines.append("decision mix:" + " " * (width - 13) + "".join(f"{h:>12}" for h in ("champion", "challenger",
                                                                                    "difference")))
    for decision, shares in comparison["decision_mix"].items():
        lines.append(f"  {decision:<{width - 2}}{shares['champion']:>12.1%}{shares['challenger']:>12.1%}"
                     f"{shares['difference']:>+12.1%}")
    lines.append("quality on labelled claims:" + "".join(f"{s:>24}" for s in SIDES))
    for label, figure in (("fraud ROC-AUC", "roc_auc"), ("fraud PR-AUC", "pr_auc"), ("fraud Brier", "brier")):
        lines.append(f"  {label:<25}" + "".join(f"{_value(comparison['quality'][s]['fraud_scores'], figure):>24}"
                                                for s in SIDES))
    lines.append(f"  {'approvals precision':<25}" + "".join(
        f"{_share(comparison['quality'][s]['approval_precision']):>24}" for s in SIDES))
    notes = {comparison["quality"][s]["fraud_scores"].get("note") for s in SIDES} - {None}
    return "\n".join(lines + [f"  ({note})" for note in sorted(notes)])


def _value(figures: dict, name: str) -> str:
    return f"{figures[name]:.4f}" if figures.get(name) is not None else "-"


def _share(figures: dict) -> str:
    if figures.get("value") is None:
        return f"- ({figures['n']} labelled)"
    return f"{figures['value']:.1%} [{figures['low']:.1%}, {figures['high']:.1%}] n={figures['n']}"
