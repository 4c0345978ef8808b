"""Configuration in one typed place: registry, decision targets, training shapes, deadlines.

Read from `claimtriage.toml` (or the file named by CLAIMTRIAGE_CONFIG), falling back to the
defaults below; MLFLOW_TRACKING_URI overrides the tracking store.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from features.graph import DEFAULT_LINK_FIELDS, DEFAULT_PLACEHOLDERS, GraphSettings

CONFIG_ENV = "CLAIMTRIAGE_CONFIG"
HOME_ENV = "CLAIMTRIAGE_HOME"
DEFAULT_CONFIG_FILE = "claimtriage.toml"

# Where the reasons' SHAP values come from (models/explain.py): the per-leaf tables, or the tools themselves.
SHAP_ENGINES = ("tables", "reference")
# The anomaly detector (models/anomaly.py): per-feature tail probabilities, or the isolation forest.
ANOMALY_DETECTORS = ("tails", "forest")
METRICS_ACCESS = ("key", "open")
# What the automatic-approval precision is judged by (models/policy.py): a prediction bound for the
# next period's approvals, or the old confidence bound for the validation period's own.
APPROVAL_BOUNDS = ("next_period", "validation")

# What a setting must be, checked where settings are read (a file, a mapping's overrides).
_BOUNDS = {
    "at least 0": lambda v: v >= 0,
    "at least 1": lambda v: v >= 1,
    "at least 2": lambda v: v >= 2,
    "above 0": lambda v: v > 0,
    "between 0 and 1 (exclusive)": lambda v: 0 < v < 1,
    "above 0 and at most 1": lambda v: 0 < v <= 1,
    "a port, 1 to 65535": lambda v: 1 <= v <= 65_535,
    '"tables" or "reference"': lambda v: v in SHAP_ENGINES,
    '"key" or "open"': lambda v: v in METRICS_ACCESS,
    '"tails" or "forest"': lambda v: v in ANOMALY_DETECTORS,
    '"next_period" or "validation"': lambda v: v in APPROVAL_BOUNDS,
}


def _bounded(default, must_be: str):
    assert must_be in _BOUNDS, must_be
    return field(default=default, metadata={"must_be": must_be})


@dataclass(frozen=True)
class RegistryConfig:
    tracking_uri: str = ""
    experiment: str = "claim-triage"
    model_name: str = "claim-triage"
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"  # scored in the shadow of the champion (serving/shadow.py)
    promotion_tolerance: float = _bounded(0.0, "at least 0")


@dataclass(frozen=True)
class DecisionTargets:
    auto_approve_precision: float = _bounded(0.99, "between 0 and 1 (exclusive)")
    auto_approve_min_support: int = _bounded(50, "at least 1")
    auto_approve_confidence_z: float = _bounded(1.28, "at least 0")
    auto_approve_bound: str = _bounded("next_period", '"next_period" or "validation"')
    auto_approve_drift_blocks: int = _bounded(3, "at least 0")  # 0 or 1: no drift margin
    siu_referral_rate: float = _bounded(0.02, "between 0 and 1 (exclusive)")
    anomaly_alert_rate: float = _bounded(0.01, "between 0 and 1 (exclusive)")
    auto_approve_amount_cap: float = _bounded(25_000.0, "at least 0")


# The red flags every claims handbook names, each a direction the fraud risk takes.
FRAUD_RISES_WITH = ("amount_to_typical_for_loss_type", "report_delay_days", "claimant_claims_90d",
                    "claimant_claims_365d", "ring_claims_90d", "ring_fraud_share")
FRAUD_FALLS_WITH = ("policy_age_days",)


@dataclass(frozen=True)
class TrainingConfig:
    seed: int = _bounded(0, "at least 0")
    validation_share: float = _bounded(0.15, "between 0 and 1 (exclusive)")
    test_share: float = _bounded(0.15, "between 0 and 1 (exclusive)")
    max_trees: int = _bounded(300, "at least 1")
    max_depth: int = _bounded(5, "at least 1")
    num_leaves: int = _bounded(20, "at least 2")
    learning_rate: float = _bounded(0.05, "above 0")
    min_child_samples: int = _bounded(50, "at least 1")
    early_stopping_rounds: int = _bounded(40, "at least 1")
    extra_trees: bool = False
    feature_fraction: float = _bounded(0.9, "above 0 and at most 1")
    reweight_rare_class: bool = False
    min_data_per_group: int = _bounded(100, "at least 1")
    cat_smooth: float = _bounded(10.0, "at least 0")
    anomaly_detector: str = _bounded("tails", '"tails" or "forest"')
    anomaly_trees: int = _bounded(100, "at least 1")
    anomaly_max_samples: int = _bounded(128, "at least 2")
    cv_below_rows: int = _bounded(20_000, "at least 0")
    cv_folds: int = _bounded(5, "at least 2")
    cv_repeats: int = _bounded(3, "at least 1")
    # More levels than this in the training claims: a categorical is read as its out-of-fold fraud
    # rate, not as a native category (claimtriage.toml gives the measurements behind 32).
    max_category_levels: int = _bounded(32, "at least 1")
    target_smoothing: float = _bounded(20.0, "at least 0")
    # The claim graph (features/graph.py): which identities link claims, how many earlier claims a
    # value may have and still link a new one, and the values that are no identity at all.
    graph_link_fields: tuple = DEFAULT_LINK_FIELDS
    graph_max_claims_per_identity: int = _bounded(50, "at least 1")
    graph_placeholders: tuple = DEFAULT_PLACEHOLDERS
    # Features the fraud risk may only rise (fall) with, all else equal: LightGBM's monotone
    # constraints. Names absent from a run's features are ignored (claimtriage.toml: why these).
    fraud_rises_with: tuple = FRAUD_RISES_WITH
    fraud_falls_with: tuple = FRAUD_FALLS_WITH

    def __post_init__(self) -> None:
        both = sorted(set(self.fraud_rises_with) & set(self.fraud_falls_with))
        if both:
            raise ConfigError(f"training.fraud_rises_with and training.fraud_falls_with both name {', '.join(both)}")

    @property
    def fraud_monotone(self) -> dict[str, int]:
        """Each constrained feature's direction for the fraud model: +1 rising, -1 falling."""
        return {**{name: 1 for name in self.fraud_rises_with}, **{name: -1 for name in self.fraud_falls_with}}

    @property
    def graph(self) -> GraphSettings:
        return GraphSettings(self.graph_link_fields, self.graph_max_claims_per_identity, self.graph_placeholders)


@dataclass(frozen=True)
class Deadlines:
    respond_hours: float = _bounded(24.0, "above 0")
    resolve_hours: float = _bounded(72.0, "above 0")


@dataclass(frozen=True)
class ServingConfig:
    host: str = "127.0.0.1"
    port: int = _bounded(3000, "a port, 1 to 65535")
    model_alias: str = "champion"
    database_url: str = ""
    max_batch_claims: int = _bounded(1000, "at least 1")
    max_group_claims: int = _bounded(32, "at least 1")  # 1 = no grouping
    trace_single_claims: bool = False
    shap_engine: str = _bounded("tables", '"tables" or "reference"')
    synthetic_claims_if_no_champion: int = _bounded(200_000, "at least 1")
    # The shadow challenger (serving/shadow.py): claims waiting for it at most (more are skipped and
    # counted, never waited for), and claims it scores together.
    shadow_queue_claims: int = _bounded(10_000, "at least 1")
    shadow_batch_claims: int = _bounded(64, "at least 1")
    # How often the overdue-cases gauge on /metrics is counted from the store (serving/live_metrics.py).
    overdue_refresh_seconds: float = _bounded(30.0, "above 0")


@dataclass(frozen=True)
class SecurityConfig:
    max_body_bytes: int = _bounded(262_144, "at least 1")
    max_batch_body_bytes: int = _bounded(8_388_608, "at least 1")
    max_errors_listed: int = _bounded(50, "at least 1")
    max_fields_per_claim: int = _bounded(500, "at least 1")
    large_body_pace_ms: float = _bounded(3.0, "at least 0")  # per piece of a body over 1 MiB while others wait
    metrics_access: str = _bounded("key", '"key" or "open"')
    secure_cookies: bool = False
    login_failures_per_user: int = _bounded(5, "at least 1")
    login_failures_per_address: int = _bounded(20, "at least 1")
    login_lockout_minutes: float = _bounded(15.0, "above 0")
    trust_forwarded_for: bool = False


@dataclass(frozen=True)
class MonitoringConfig:
    """`claimtriage monitor`: the period it looks at, how figures are judged, and when it alerts."""

    period_days: int = _bounded(7, "at least 1")  # without --since: the last this many days
    weekly_after_days: int = _bounded(56, "at least 1")  # a longer period shows its decision mix per week
    min_labels: int = _bounded(30, "at least 1")  # fewer labelled claims: "not enough labels", no quality alert
    confidence_z: float = _bounded(1.96, "above 0")  # two-sided Wilson interval of a realised share (95%)
    reliability_bins: int = _bounded(10, "at least 2")
    psi_alert: float = _bounded(0.25, "above 0")  # on a score or one of the top features
    psi_alert_top_features: int = _bounded(10, "at least 1")
    # Fewer claims in the period: drift is shown but never alerted on (PSI moves by chance on few claims).
    min_drift_claims: int = _bounded(500, "at least 1")
    max_overdue_cases: int = _bounded(10, "at least 0")  # more cases past a deadline now: an alert


@dataclass(frozen=True)
class Config:
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    targets: DecisionTargets = field(default_factory=DecisionTargets)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    deadlines: Deadlines = field(default_factory=Deadlines)
    serving: ServingConfig = field(default_factory=ServingConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    home: Path = field(default_factory=Path.cwd)

    @property
    def tracking_uri(self) -> str:
        """MLFLOW_TRACKING_URI if set, else the file's setting, else SQLite in the home folder."""
        return (os.environ.get("MLFLOW_TRACKING_URI") or self.registry.tracking_uri
                or f"sqlite:///{(self.home / 'mlflow.db').resolve()}")

    @property
    def database_url(self) -> str:
        """CLAIMTRIAGE_DATABASE_URL if set, else the file's setting, else SQLite in the home folder."""
        return (os.environ.get("CLAIMTRIAGE_DATABASE_URL") or self.serving.database_url
                or f"sqlite:///{(self.home / 'claims.db').resolve()}")

    @property
    def artifact_location(self) -> str:
        """Where a new experiment keeps its artifacts when tracking is local."""
        return (self.home / "mlartifacts").resolve().as_uri()


class ConfigError(ValueError):
    """A configuration file that cannot be used, with the key at fault."""


def load_config(path: str | Path | None = None) -> Config:
    """Read the configuration; unknown sections or keys are errors, not silently ignored."""
    home = Path(os.environ.get(HOME_ENV) or Path.cwd())
    path = Path(path or os.environ.get(CONFIG_ENV) or home / DEFAULT_CONFIG_FILE)
    if not path.exists():
        if os.environ.get(CONFIG_ENV):
            raise ConfigError(f"{CONFIG_ENV}={path} does not exist")
        return Config(home=home)
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    config = Config(home=home)
    for section, value in raw.items():
        if section not in {f.name for f in fields(Config)} - {"home"}:
            raise ConfigError(f"{path}: unknown section [{section}]")
        config = replace(config, **{section: with_settings(getattr(config, section), value, section, str(path))})
    return config


def with_settings(current, values: dict, section: str, where: str):
    """`current` (one section's settings) with `values` applied, each checked for its name, type and
    range; the first mistake is a ConfigError naming `where` and the key."""
    known = {f.name: f for f in fields(current)}
    checked = {}
    for key, item in values.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key {section}.{key}; known: {', '.join(known)}")
        expected = type(getattr(current, key))
        if expected is float and isinstance(item, int) and not isinstance(item, bool):
            item = float(item)
        if expected is tuple and isinstance(item, list) and all(isinstance(x, str) for x in item):
            item = tuple(item)  # a list of names
        if not isinstance(item, expected) or isinstance(item, bool) != (expected is bool):
            raise ConfigError(f"{where}: {section}.{key} must be {expected.__name__}, got {item!r}")
        must_be = known[key].metadata.get("must_be")
        if must_be is not None and not _BOUNDS[must_be](item):
            raise ConfigError(f"{where}: {section}.{key} must be {must_be}, got {item!r}")
        checked[key] = item
    return replace(current, **checked)
