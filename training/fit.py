"""Fitting the bundle: features, the two boosted models, the anomaly detector, calibration, policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.builder import FeatureBuilder
from models.anomaly import ANOMALY_GROUP_BY, AnomalyDetector, TailDetector, input_columns
from models.bundle import BoostedModel, TriageBundle
from models.calibration import PlattCalibrator
from models.config import Config, TrainingConfig
from models.policy import DecisionPolicy
from training.data import Split, claim_times

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Extras:
    """What a dataset mapping adds to the features: extra source columns passed through as model
    features, how precisely its date fields are known, and how to encode its categorical ones."""

    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    precision: dict[str, str] = field(default_factory=dict)  # date field -> "year" ... "second"
    encodings: dict[str, str] = field(default_factory=dict)  # feature -> "auto" | "category" | ...


@dataclass
class FittedRun:
    """A fitted bundle with the feature matrix and labels it was fitted and judged on."""

    bundle: TriageBundle
    matrix: np.ndarray
    is_fraud: np.ndarray
    payable: np.ndarray | None
    split: Split


def payable_label(claims: pd.DataFrame) -> np.ndarray | None:
    """The eligibility target: paid as filed and not fraud; None when the extract has no such label."""
    if "paid_as_filed" not in claims.columns or claims["paid_as_filed"].isna().all():
        return None
    paid = claims["paid_as_filed"].to_numpy(dtype=bool, na_value=False)
    return paid & ~claims["is_fraud"].to_numpy(dtype=bool, na_value=False)


def typical_values(builder: FeatureBuilder, legitimate: np.ndarray) -> dict[str, float]:
    """Median of each numeric feature among legitimate training claims: "typical" in reasons; for a
    code read as its fraud rate, the rate of all training claims."""
    with np.errstate(all="ignore"):
        medians = np.nanmedian(legitimate, axis=0) if len(legitimate) else np.full(legitimate.shape[1], np.nan)
    typical = {s.name: float(m) for s, m in zip(builder.specs_, medians) if s.kind == "numeric" and np.isfinite(m)}
    typical.update({name: e.unseen for name, e in builder.encoded_.items() if e.method == "target"})
    return typical


def fit_builder(claims: pd.DataFrame, split: Split, cfg: TrainingConfig,
                extras: Extras) -> tuple[FeatureBuilder, np.ndarray]:
    """The feature builder fitted on the training claims, and the matrix of all claims.

    The training claims' code fraud rates are out of fold: read from their own labels, the trees
    would learn that a code's rate predicts fraud far better than it does on new claims."""
    train = claims.loc[split.train]
    builder = FeatureBuilder(extras.categorical, extras.numeric, extras.precision, extras.encodings,
                             cfg.max_category_levels, cfg.target_smoothing, cfg.seed, cfg.graph).fit(train)
    matrix = builder.transform(claims)
    matrix[split.train] = builder.out_of_fold(train, matrix[split.train])
    return builder, matrix


def booster_params(cfg: TrainingConfig, positive_weight: float, monotone: list[int] | None = None) -> dict:
    """LightGBM settings; depth and leaves are capped so exact explanations stay cheap online.
    `monotone`: per feature, +1 / -1 where the outcome may only rise / fall with it, else 0."""
    constraints = {"monotone_constraints": monotone, "monotone_constraints_method": "intermediate"} if monotone else {}
    return constraints | {
        "objective": "binary", "metric": "auc", "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves, "max_depth": cfg.max_depth, "min_child_samples": cfg.min_child_samples,
        "feature_fraction": cfg.feature_fraction, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
        "extra_trees": cfg.extra_trees, "min_data_per_group": cfg.min_data_per_group, "cat_smooth": cfg.cat_smooth,
        "scale_pos_weight": positive_weight, "seed": cfg.seed, "deterministic": True,
        "force_row_wise": True, "num_threads": 2, "verbose": -1,
    }


def fit_boosted(matrix: np.ndarray, target: np.ndarray, split: Split, builder: FeatureBuilder,
                cfg: TrainingConfig, reweight: bool, monotone: dict[str, int] | None = None) -> BoostedModel:
    """Train on the training period with early stopping on validation; calibrate on validation.
    `monotone`: directions (+1 / -1) of the features the outcome may only rise / fall with."""
    y_train, y_val = target[split.train], target[split.validation]
    if y_train.min() == y_train.max() or y_val.min() == y_val.max():
        raise ValueError("both outcomes must occur in the training and the validation period")
    # With `reweight`, rare fraud is up-weighted by the square root of its odds (calibration undoes
    # the shift); off by default: it cost 3-4 points of fraud PR-AUC (claimtriage.toml).
    weight = float(np.sqrt((1 - y_train.mean()) / y_train.mean())) if reweight else 1.0
    common = {"feature_name": builder.feature_names_, "categorical_feature": builder.categorical_indices_,
              "free_raw_data": False}
    train_set = lgb.Dataset(matrix[split.train], y_train, **common)
    val_set = lgb.Dataset(matrix[split.validation], y_val, reference=train_set, **common)
    directions = [(monotone or {}).get(name, 0) for name in builder.feature_names_]
    params = booster_params(cfg, weight, directions if any(directions) else None)
    booster = lgb.train(params, train_set, num_boost_round=cfg.max_trees, valid_sets=[val_set],
                        callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)])
    booster.free_dataset()
    model = BoostedModel(booster, PlattCalibrator())
    model.calibrator.fit(model.margin(matrix[split.validation]), y_val)
    return model


def fit_fraud(matrix: np.ndarray, is_fraud: np.ndarray, split: Split, builder: FeatureBuilder,
              cfg: TrainingConfig) -> BoostedModel:
    """The fraud model as every version is fitted: the configured up-weighting and monotone directions."""
    return fit_boosted(matrix, is_fraud, split, builder, cfg, reweight=cfg.reweight_rare_class,
                       monotone=cfg.fraud_monotone)


def fit_anomaly_detector(builder: FeatureBuilder, train: np.ndarray,
                         cfg: TrainingConfig) -> TailDetector | AnomalyDetector:
    """The configured anomaly detector over the named claim features (models.anomaly.ANOMALY_INPUTS);
    the amount is judged per line of business and loss type when they reach the model as categories."""
    names = builder.feature_names_
    if cfg.anomaly_detector == "forest":
        return AnomalyDetector(input_columns(names), cfg.anomaly_trees, cfg.anomaly_max_samples, cfg.seed).fit(train)
    categories = {names[j] for j in builder.categorical_indices_}
    return TailDetector(names, group_by=tuple(n for n in ANOMALY_GROUP_BY if n in categories)).fit(train)


def fit_bundle(claims: pd.DataFrame, split: Split, config: Config, progress: Progress = lambda _: None,
               extras: Extras = Extras()) -> FittedRun:
    """Fit every part of the bundle on the training claims; calibration and thresholds on validation."""
    cfg = config.training
    progress("features")
    builder, matrix = fit_builder(claims, split, cfg, extras)
    is_fraud = claims["is_fraud"].to_numpy(dtype=bool)
    payable = payable_label(claims)
    progress("fraud model")
    fraud = fit_fraud(matrix, is_fraud, split, builder, cfg)
    eligibility = None
    if payable is not None:
        progress("eligibility model")
        eligibility = fit_boosted(matrix, payable, split, builder, cfg, reweight=False)
    progress("anomaly detector")
    anomaly = fit_anomaly_detector(builder, matrix[split.train], cfg)
    progress("decision policy")
    bundle = TriageBundle(builder, fraud, anomaly, DecisionPolicy(config.targets), eligibility,
                          typical_values=typical_values(builder, matrix[split.train & ~is_fraud]))
    val = claims.loc[split.validation]
    scores = bundle.model_scores(val, matrix[split.validation])
    times = claim_times(val) if split.kind == "time" else None  # the drift margin needs a period in time
    bundle.policy.fit(scores.fraud, scores.anomaly, scores.approval,
                      None if payable is None else payable[split.validation], scores.blocked,
                      None if times is None else times[1])
    return FittedRun(bundle, matrix, is_fraud, payable, split)


