"""Configuration: one typed place, file and environment, mistakes reported by key."""

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
    assert config.tracking_uri == "sqlite:///x.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert load_config(path).tracking_uri == "http://mlflow.internal:5000"


@pytest.mark.parametrize("text, message", [
    ("[targets]\nsiu_rate = 0.05\n", "unknown key targets.siu_rate"),
    ("[target]\nx = 1\n", "unknown section [target]"),
    ('[targets]\nsiu_referral_rate = "high"\n', "targets.siu_referral_rate must be float"),
    ("[training]\nmax_trees = 1.5\n", "training.max_trees must be int"),
])
def test_mistakes_name_the_key(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(path)


def test_committed_config_file_loads_and_matches_the_defaults():
    from pathlib import Path

    from models.config import Config

    committed = load_config(Path(__file__).resolve().parents[2] / "claimtriage.toml")
    defaults = Config(home=committed.home)
    assert committed.targets == defaults.targets and committed.training == defaults.training
    assert committed.deadlines == defaults.deadlines and committed.registry == defaults.registry


def test_a_group_size_below_one_stops_the_service_before_it_loads_anything(tmp_path, monkeypatch):
    from serving.loading import load_scorer

    monkeypatch.setenv("CLAIMTRIAGE_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = tmp_path / "c.toml"
    path.write_text("[serving]\nmax_group_claims = 0\n")
    # Nothing is registered in this home: only a check made first gives this error.
    with pytest.raises(ConfigError, match=r"serving\.max_group_claims must be at least 1 \(1 = no grouping\), not 0"):
        load_scorer(config=load_config(path))
