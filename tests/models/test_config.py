"""Configuration: one typed place, file and environment, mistakes reported by key."""

import re

import pytest

from models.config import ConfigError, load_config


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLAIMTRIAGE_CONFIG", raising=False)
    monkeypatch.delenv("CLAIMTRIAGE_HOME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = load_config()
    assert config.targets.auto_approve_precision == 0.99
    assert config.deadlines.respond_hours == 24 and config.deadlines.resolve_hours == 72
    assert config.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"


def test_file_values_override_defaults_and_env_overrides_tracking(tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    path.write_text('[targets]\nsiu_referral_rate = 0.05\n[deadlines]\nrespond_hours = 12\n'
                    '[registry]\ntracking_uri = "sqlite:///x.db"\n')
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = load_config(path)
    assert config.targets.siu_referral_rate == 0.05 and config.deadlines.respond_hours == 12.0
    assert load_config(_written(tmp_path, "[deadlines]\nrespond_hours = 0.5\n")).deadlines.respond_hours == 0.5
    assert config.tracking_uri == "sqlite:///x.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert load_config(path).tracking_uri == "http://mlflow.internal:5000"


@pytest.mark.parametrize("text, message", [
    ("[targets]\nsiu_rate = 0.05\n", "unknown key targets.siu_rate"),
    ("[target]\nx = 1\n", "unknown section [target]"),
    ('[targets]\nsiu_referral_rate = "high"\n', "targets.siu_referral_rate must be float"),
    ("[training]\nmax_trees = 1.5\n", "training.max_trees must be int"),
    ("[serving]\nmax_group_claims = 0\n", "serving.max_group_claims must be at least 1, got 0"),
    ("[serving]\nport = 70000\n", "serving.port must be a port, 1 to 65535, got 70000"),
    ("[targets]\nsiu_referral_rate = 1.5\n", "targets.siu_referral_rate must be between 0 and 1 (exclusive), got 1.5"),
    ("[deadlines]\nresolve_hours = 0\n", "deadlines.resolve_hours must be above 0, got 0.0"),
    ("[training]\nfeature_fraction = 0\n", "training.feature_fraction must be above 0 and at most 1, got 0.0"),
    ('[serving]\nshap_engine = "shap"\n', 'serving.shap_engine must be "tables" or "reference", got \'shap\''),
    ("[monitoring]\nmin_labels = 0\n", "monitoring.min_labels must be at least 1, got 0"),
    ("[monitoring]\npsi_alert = -0.1\n", "monitoring.psi_alert must be above 0, got -0.1"),
    ("[monitoring]\nmax_overdue = 3\n", "unknown key monitoring.max_overdue"),
    ('[training]\nfraud_rises_with = ["policy_age_days", "claim_amount"]\n',
     "training.fraud_rises_with and training.fraud_falls_with both name policy_age_days"),
    ("[training]\nfraud_falls_with = [30]\n", "training.fraud_falls_with must be tuple"),
])
def test_mistakes_name_the_key(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


def test_committed_config_file_loads_and_matches_the_defaults():
    from pathlib import Path

    from models.config import Config

    committed = load_config(Path(__file__).resolve().parents[2] / "claimtriage.toml")
    defaults = Config(home=committed.home)
    assert committed.targets == defaults.targets and committed.training == defaults.training
    assert committed.deadlines == defaults.deadlines and committed.registry == defaults.registry
    assert committed.security == defaults.security and committed.monitoring == defaults.monitoring
    assert committed.serving == defaults.serving


def test_every_bounded_setting_takes_its_default_and_refuses_a_value_out_of_range(tmp_path):
    """Each bounded setting's default passes its own bound, and a value far outside it is refused."""
    from dataclasses import fields

    from models.config import Config, with_settings

    config, bounded = Config(home=tmp_path), 0
    for section in fields(Config):
        if section.name == "home":
            continue
        current = getattr(config, section.name)
        for f in fields(current):
            if "must_be" not in f.metadata:
                continue
            bounded += 1
            default = getattr(current, f.name)
            assert getattr(with_settings(current, {f.name: default}, section.name, "t"), f.name) == default
            with pytest.raises(ConfigError, match=rf"{section.name}\.{f.name} must be "):
                with_settings(current, {f.name: type(default)(-1)}, section.name, "t")
    assert bounded >= 25


def test_a_mappings_training_overrides_are_checked_as_the_files_are(tmp_path):
    from training.from_mapping import with_training_overrides

    config = load_config(tmp_path / "none.toml")
    assert with_training_overrides(config, {"max_trees": 50}, "m.toml").training.max_trees == 50
    with pytest.raises(ConfigError, match=r"m\.toml: training\.learning_rate must be above 0, got 0\.0"):
        with_training_overrides(config, {"learning_rate": 0}, "m.toml")
    with pytest.raises(ConfigError, match=r"m\.toml: unknown key training\.trees"):
        with_training_overrides(config, {"trees": 5}, "m.toml")


def _written(tmp_path, text: str):
    path = tmp_path / "written.toml"
    path.write_text(text)
    return path
