"""Configuration in one typed place: registry, decision targets, training shapes, deadlines.

Read from `claimtriage.toml` (or the file named by CLAIMTRIAGE_CONFIG), falling back to the
defaults below; MLFLOW_TRACKING_URI overrides the tracking store.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

CONFIG_ENV = "CLAIMTRIAGE_CONFIG"
HOME_ENV = "CLAIMTRIAGE_HOME"
DEFAULT_CONFIG_FILE = "claimtriage.toml"


@dataclass(frozen=True)
class RegistryConfig:
    tracking_uri: str = ""
    experiment: str = "claim-triage"
    model_name: str = "claim-triage"
    champion_alias: str = "champion"
    promotion_tolerance: float = 0.0


@dataclass(frozen=True)
class DecisionTargets:
    auto_approve_precision: float = 0.99
    auto_approve_min_support: int = 50
    auto_approve_confidence_z: float = 1.645
    siu_referral_rate: float = 0.02
    anomaly_alert_rate: float = 0.01
    auto_approve_amount_cap: float = 25_000.0


@dataclass(frozen=True)
class TrainingConfig:
    seed: int = 0
    validation_share: float = 0.15
    test_share: float = 0.15
    max_trees: int = 300
    max_depth: int = 5
    num_leaves: int = 20
    learning_rate: float = 0.05
    min_child_samples: int = 50
    early_stopping_rounds: int = 40
    extra_trees: bool = False
    feature_fraction: float = 0.9
    reweight_rare_class: bool = True
    min_data_per_group: int = 100
    cat_smooth: float = 10.0
    anomaly_trees: int = 100
    anomaly_max_samples: int = 128
    cv_below_rows: int = 20_000
    cv_folds: int = 5
    cv_repeats: int = 3


@dataclass(frozen=True)
class Deadlines:
    respond_hours: float = 24
    resolve_hours: float = 72


@dataclass(frozen=True)
class ServingConfig:
    host: str = "127.0.0.1"
    port: int = 3000
    model_alias: str = "champion"
    database_url: str = ""
    max_batch_claims: int = 1000
    max_group_claims: int = 32
    trace_single_claims: bool = False
    synthetic_claims_if_no_champion: int = 200_000


@dataclass(frozen=True)
class Config:
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    targets: DecisionTargets = field(default_factory=DecisionTargets)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    deadlines: Deadlines = field(default_factory=Deadlines)
    serving: ServingConfig = field(default_factory=ServingConfig)
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
        current = getattr(config, section)
        allowed = {f.name for f in fields(current)}
        checked = {}
        for key, item in value.items():
            if key not in allowed:
                raise ConfigError(f"{path}: unknown key {section}.{key}")
            expected = type(getattr(current, key))
            if expected is float and isinstance(item, int) and not isinstance(item, bool):
                item = float(item)
            if not isinstance(item, expected) or isinstance(item, bool) != (expected is bool):
                raise ConfigError(f"{path}: {section}.{key} must be {expected.__name__}, got {item!r}")
            checked[key] = item
        config = replace(config, **{section: replace(current, **checked)})
    return config
