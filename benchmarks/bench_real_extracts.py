"""Benchmark: our fraud model beside plain LightGBM on any extract and its mapping, same rows, same folds.

    python benchmarks/bench_real_extracts.py EXTRACT MAPPING [--folds 5 --repeats 3 --seed 0] [--json OUT]

Rows: the extract through its mapping, validated as `claimtriage train` validates it (the
mapping's `training:` settings and extra features included); rows training would leave out are
left out of both. Folds: the repeated stratified k-fold training cross-validates small extracts
with (training.data.cross_validation_splits). Ours is fitted per fold exactly as
training/train.py cross_validate fits it (training rows, early stopping and calibration on the
validation share) and scored on the test rows. Plain LightGBM is `LGBMClassifier()` with its
defaults (random_state and verbose only), fitted on the training and validation rows of the
same fold and scored on the same test rows, on the same source columns the mapping reads (labels
excluded), typed as a plain user would type them: a column whose non-missing values all read as
numbers is numeric, any other a pandas category; the mapping's missing markers are missing.

Prints ROC-AUC and PR-AUC (average precision) for each, mean ± standard deviation over folds,
the per-fold difference (ours - plain) with its spread, the machine and the wall time.
Not a test: the figures are for reading, and the exit code is 0 whatever they say.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import average_precision_score, roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.mapping import DatasetMapping, apply_mapping, load_mapping, read_source  # noqa: E402
from models.config import Config, load_config, with_settings  # noqa: E402
from training.from_mapping import mapping_extras, with_training_overrides  # noqa: E402
from training.data import Split, claim_times, cross_validation_splits, validate_for_training  # noqa: E402
from training.fit import Extras, fit_bundle  # noqa: E402
from training.train import extra_fields  # noqa: E402

METRICS = {"roc_auc": roc_auc_score, "pr_auc": average_precision_score}
MODELS = ("ours", "plain")


@dataclass
class Extract:
    """An extract ready for both models: canonical claims in training order and the same raw rows."""

    claims: pd.DataFrame
    raw: pd.DataFrame
    mapping: DatasetMapping
    config: Config
    extras: Extras
    n_invalid: int


def load_extract(data: Path, mapping_file: Path, config: Config) -> Extract:
    """The extract as `claimtriage train --mapping` makes it a training frame, with its raw rows beside."""
    mapping = load_mapping(mapping_file)
    raw = read_source(data, mapping)
    frame = apply_mapping(raw, mapping)  # index = row position in the extract
    config = with_training_overrides(config, mapping.training, str(mapping_file))
    extras = mapping_extras(mapping)  # as `claimtriage train --mapping` builds them
    report = validate_for_training(frame, partial=True, extra_fields=extra_fields(frame, extras))
    claims = report.claims
    times = claim_times(claims)
    if times is not None:  # training orders claims by time before it folds them (training/train.py)
        claims = claims.sort_values(times[0], kind="stable")
    rows = claims.index.to_numpy()
    return Extract(claims.reset_index(drop=True), raw.iloc[rows].reset_index(drop=True), mapping, config, extras,
                   report.n_invalid)


def source_columns(mapping: DatasetMapping) -> dict[str, tuple[str, ...]]:
    """Every extract column the mapping reads for fields and extra features, with its missing markers."""
    label_columns = {rule.get("column") for rule in mapping.labels.values()}
    columns: dict[str, tuple[str, ...]] = {}
    for rule in mapping.fields.values():
        read = [rule["column"]] if "column" in rule else []
        read += list((rule.get("parts") or {}).values()) + list(rule.get("join") or [])
        for column in read:
            own = tuple(str(v) for v in rule.get("missing", ()))
            columns[column] = columns.get(column, mapping.missing_values) + own
    extra_rules = getattr(mapping, "extra_rules", {})  # an extra feature's own rule, where mappings have them
    for column in mapping.extra_categorical + mapping.extra_numeric:
        own = tuple(str(v) for v in extra_rules.get(column, {}).get("missing", ()))
        columns[column] = columns.get(column, mapping.missing_values) + own
    return {c: missing for c, missing in columns.items() if c not in label_columns}


def plain_features(raw: pd.DataFrame, mapping: DatasetMapping) -> pd.DataFrame:
    """The mapped source columns as a plain user types them: numbers where every value is one, else categories."""
    out = {}
    for column, missing in source_columns(mapping).items():
        values = raw[column].mask(raw[column].isin(missing))
        numbers = pd.to_numeric(values, errors="coerce")
        out[column] = numbers.astype("float64") if numbers.notna().sum() == values.notna().sum() \
            else values.astype("category")
    return pd.DataFrame(out, index=raw.index)


def ours_on_fold(extract: Extract, split: Split) -> np.ndarray:
    """Fraud probability of the test claims, fitted as cross-validation in training fits it."""
    fitted = fit_bundle(extract.claims, split, extract.config, extras=extract.extras)
    test = split.test
    return fitted.bundle.model_scores(extract.claims.loc[test], fitted.matrix[test]).fraud


def plain_on_fold(features: pd.DataFrame, is_fraud: np.ndarray, split: Split, seed: int) -> np.ndarray:
    """Default LightGBM on the training and validation claims of the fold, scored on its test claims."""
    fit_rows = split.train | split.validation
    model = lgb.LGBMClassifier(random_state=seed, verbose=-1)
    model.fit(features[fit_rows], is_fraud[fit_rows])
    return model.predict_proba(features[split.test])[:, 1]


def run_folds(extract: Extract, seed: int) -> dict:
    """Both models on every fold: per-fold metrics and the time each model took."""
    cfg = extract.config.training
    is_fraud = extract.claims["is_fraud"].to_numpy(dtype=bool)
    features = plain_features(extract.raw, extract.mapping)
    folds = {m: {k: [] for k in METRICS} for m in MODELS}
    seconds = dict.fromkeys(MODELS, 0.0)
    splits = cross_validation_splits(extract.claims, cfg.cv_folds, cfg.cv_repeats, cfg.validation_share, cfg.seed)
    for split in splits:
        for model, score in (("ours", lambda s: ours_on_fold(extract, s)),
                             ("plain", lambda s: plain_on_fold(features, is_fraud, s, seed))):
            started = time.perf_counter()
            probability = score(split)
            seconds[model] += time.perf_counter() - started
            for name, metric in METRICS.items():
                folds[model][name].append(float(metric(is_fraud[split.test], probability)))
    return {"folds": folds, "seconds": seconds, "plain_columns": _described_columns(features)}


def _described_columns(features: pd.DataFrame) -> dict[str, list[str]]:
    numeric = [c for c in features.columns if features[c].dtype == "float64"]
    return {"numeric": numeric, "categorical": [c for c in features.columns if c not in numeric]}


def spread(values: list[float]) -> dict:
    """Mean and standard deviation over folds (population, as training logs cv_*_std), and the folds."""
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "folds": values}


def summarise(result: dict) -> dict:
    """Per model and metric the spread over folds; the per-fold difference ours - plain and its spread."""
    folds = result["folds"]
    out = {m: {k: spread(folds[m][k]) for k in METRICS} | {"seconds": result["seconds"][m]} for m in MODELS}
    out["difference"] = {}
    for name in METRICS:
        diff = list(np.subtract(folds["ours"][name], folds["plain"][name]))
        out["difference"][name] = spread([float(d) for d in diff]) | {"ours_ahead_folds": int(np.sum(np.array(diff) > 0))}
    return out


def machine() -> dict:
    """What the figures were measured on."""
    cpu = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor() or "unknown")
    memory = next((line.split()[1] for line in _read_lines("/proc/meminfo") if line.startswith("MemTotal")), None)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": usable, "memory_gib": round(int(memory) / 2**20, 1) if memory else None,
            "platform": platform.platform(), "python": platform.python_version(), "lightgbm": lgb.__version__}


def code_state() -> dict:
    """Which code measured: the commit, and the files changed beside it (read-only git queries)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""
    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or "unknown", "modified_files": changed}


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def report(args, extract: Extract, summary: dict, columns: dict, wall: float) -> str:
    """The figures side by side, as a reader compares them."""
    cfg = extract.config.training
    claims = extract.claims
    n_folds = cfg.cv_folds * cfg.cv_repeats
    lines = [f"extract {args.extract} via {args.mapping}",
             f"  {len(claims):,} claims used ({extract.n_invalid} invalid left out), fraud {claims['is_fraud'].mean():.1%}; "
             f"{cfg.cv_repeats} x {cfg.cv_folds}-fold stratified CV, seed {cfg.seed} ({n_folds} folds)",
             f"  plain LightGBM reads {len(columns['numeric'])} numeric and {len(columns['categorical'])} categorical "
             f"columns; ours: the mapping's fields and features"
             + (f", with the mapping's training settings {extract.mapping.training}" if extract.mapping.training else ""),
             "",
             f"  {'':22s}{'ROC-AUC':>18s}{'PR-AUC':>18s}{'fit+score':>12s}"]
    for model, title in (("ours", "ours (claimtriage)"), ("plain", "plain LightGBM")):
        cells = "".join(f"{summary[model][k]['mean']:>10.3f} ± {summary[model][k]['std']:.3f}" for k in METRICS)
        lines.append(f"  {title:22s}{cells}{summary[model]['seconds']:>10.1f} s")
    diff = summary["difference"]
    cells = "".join(f"{diff[k]['mean']:>+10.3f} ± {diff[k]['std']:.3f}" for k in METRICS)
    lines.append(f"  {'ours - plain, per fold':22s}{cells}")
    lines.append(f"  {'ours ahead in':22s}" + "".join(f"{diff[k]['ours_ahead_folds']:>10d} of {n_folds:<5d}"
                                                        for k in METRICS))
    verdict = ", ".join(f"{k}: {'not worse' if diff[k]['mean'] >= 0 else 'WORSE'}" for k in METRICS)
    lines += ["", f"  ours against plain (mean over folds): {verdict}"]
    m = machine()
    lines.append(f"  machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; python {m['python']}, "
                 f"lightgbm {m['lightgbm']}; wall time {wall:.1f} s")
    code = code_state()
    lines.append(f"  code: {code['commit']}" + (f" with {len(code['modified_files'])} modified files "
                                                 f"({', '.join(code['modified_files'])})" if code["modified_files"] else ""))
    return "\n".join(lines)


def _override(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    return key.strip(), yaml.safe_load(value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("extract", type=Path, help="the insurer's extract, .csv or .parquet")
    parser.add_argument("mapping", type=Path, help="its dataset mapping (YAML)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="folds, our model and plain LightGBM's random_state")
    parser.add_argument("--set", dest="settings", action="append", type=_override, default=[], metavar="KEY=VALUE",
                        help="for experiments: a [training] setting for ours, after the mapping's (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    config = load_config()
    extract = load_extract(args.extract, args.mapping, config)
    training = replace(extract.config.training, seed=args.seed, cv_folds=args.folds, cv_repeats=args.repeats)
    training = with_settings(training, dict(args.settings), "training", "--set")
    extract.config = replace(extract.config, training=training)
    result = run_folds(extract, args.seed)
    summary = summarise(result)
    wall = time.perf_counter() - started
    print(report(args, extract, summary, result["plain_columns"], wall))
    if args.json:
        figures = {"extract": str(args.extract), "mapping": str(args.mapping), "claims": len(extract.claims),
                   "invalid_left_out": extract.n_invalid, "fraud_rate": float(extract.claims["is_fraud"].mean()),
                   "folds": args.folds, "repeats": args.repeats, "seed": args.seed,
                   "ours_settings": {**extract.mapping.training, **dict(args.settings)},
                   "plain_columns": result["plain_columns"], **summary, "machine": machine(), "code": code_state(),
                   "wall_seconds": wall}
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
