"""Shared fixtures: small generated claims and an isolated MLflow home per test.

PostgreSQL: the claim-store tests run on SQLite and, where a server answers on 127.0.0.1:5432 (or at
CLAIMTRIAGE_TEST_POSTGRES_URL, an SQLAlchemy URL of a database to create test databases from), on
PostgreSQL too. Where none answers, those tests are skipped and the summary ends with a banner
counting them; with CLAIMTRIAGE_REQUIRE_POSTGRES=1 they fail instead (for CI, where a run without
PostgreSQL must not pass for one with it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from models.config import load_config


@pytest.fixture(scope="session")
def generated_claims() -> pd.DataFrame:
    """20,000 synthetic claims (seed 7), shared read-only across tests: copy before changing."""
    from training.generate import generate_claims

    return generate_claims(20_000, seed=7)


@pytest.fixture(scope="session")
def typed_claims(generated_claims) -> pd.DataFrame:
    """The generated claims after validation: canonical dtypes, sorted by report time."""
    from features.validation import validate_claims

    report = validate_claims(generated_claims, require_labels=True)
    assert report.ok, report.summary()
    return report.claims.sort_values("report_date", kind="stable").reset_index(drop=True)


@pytest.fixture(scope="session")
def empty_tracking_store(tmp_path_factory) -> Path:
    """An MLflow SQLite tracking store and registry with MLflow's tables made and nothing in them, to copy
    into each new home (`tracking_store_in`). MLflow makes a new store's tables by running its schema
    migrations, 3-6 s a store on this machine, which each of the suite's thirty-odd homes paid before."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("empty-tracking-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # MLflow's own "Default" experiment keeps its artifacts here, never in the project
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        assert client.search_experiments()[0].name == "Default" and not client.search_registered_models()
    return folder / "mlflow.db"


def tracking_store_in(home: Path, empty: Path) -> str:
    """A new, empty tracking store and registry in `home` (a copy of `empty_tracking_store`), as its URI."""
    shutil.copyfile(empty, home / "mlflow.db")
    return f"sqlite:///{home / 'mlflow.db'}"


def use_home(patch: pytest.MonkeyPatch, home: Path, empty_store: Path) -> None:
    """Work in `home`: its own SQLite tracking store and registry (a copy of `empty_store`), its claim
    store and claimtriage.toml (the defaults: whatever the environment named is forgotten)."""
    patch.setenv("CLAIMTRIAGE_HOME", str(home))
    patch.setenv("MLFLOW_TRACKING_URI", tracking_store_in(home, empty_store))
    patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    patch.delenv("CLAIMTRIAGE_CONFIG", raising=False)
    patch.delenv("CLAIMTRIAGE_DATABASE_URL", raising=False)
    patch.chdir(home)


@pytest.fixture
def mlflow_home(tmp_path, monkeypatch, empty_tracking_store):
    """A private working directory with its own SQLite tracking store and registry."""
    use_home(monkeypatch, tmp_path, empty_tracking_store)
    return load_config()


@pytest.fixture
def few_folds(mlflow_home, tmp_path):
    """`mlflow_home` whose claimtriage.toml (read by the CLI too) cross-validates with 2 folds, once.

    Small data is evaluated by repeated k-fold, 15 fits by default; where a test is about something
    else, two folds once take the same code path in a fifth of the time."""
    (tmp_path / "claimtriage.toml").write_text("[training]\ncv_folds = 2\ncv_repeats = 1\n")
    config = load_config()
    assert (config.training.cv_folds, config.training.cv_repeats) == (2, 1)
    return config


@pytest.fixture(scope="session")
def fitted_run(typed_claims):
    """A bundle fitted on the 20,000 generated claims (no MLflow), with its split and matrix."""
    from models.config import Config
    from training.data import split_claims
    from training.fit import fit_bundle

    config = Config()
    split = split_claims(typed_claims, 0.15, 0.15, 0)
    return fit_bundle(typed_claims, split, config)


# Set by tests/serving/conftest.py on each test that needed PostgreSQL and did without.
WITHOUT_POSTGRES = ("claimtriage", "without PostgreSQL")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """A banner no one scrolls past, after the short summary: how many tests needed PostgreSQL and
    did not get it. A skip is otherwise one letter among hundreds, and a green run would pass for
    one that tested the PostgreSQL store."""
    result = yield
    stats = terminalreporter.stats
    skipped = _without_postgres(stats.get("skipped", []))
    failed = _without_postgres(stats.get("error", []) + stats.get("failed", []))
    if skipped or failed:
        count, word = (len(failed), "failed") if failed else (len(skipped), "skipped")
        reason = next(iter(failed.values() if failed else skipped.values()))
        terminalreporter.write_sep("!", f"{count} test{'s' if count > 1 else ''} {word} for lack of PostgreSQL",
                                   red=True, bold=True)
        terminalreporter.write_line(f"  {reason}")
        terminalreporter.write_line("  The claim store, ledger and credentials were NOT tested on PostgreSQL: start a "
                                    "server (trust auth, database 'test') or name one in CLAIMTRIAGE_TEST_POSTGRES_URL;")
        terminalreporter.write_line("  CLAIMTRIAGE_REQUIRE_POSTGRES=1 makes its absence a failure.")
    return result


def _without_postgres(reports) -> dict[str, str]:
    """Node id -> reason, for the reports of tests marked as having done without PostgreSQL."""
    out = {}
    for report in reports:
        if WITHOUT_POSTGRES in getattr(report, "user_properties", ()):
            text = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longreprtext.strip()
            out[report.nodeid] = text.removeprefix("Skipped: ").splitlines()[-1]
    return out


@pytest.fixture(scope="session")
def free_port():
    """A function giving a port nobody listens on, for a server of the test's own. The port is drawn
    below the kernel's ephemeral range, so no outgoing connection (a test's client, the database's)
    can take it between our check and the server's bind, and is never handed out twice in a run (a
    stopped server's port may still be in TIME_WAIT). A port from the kernel (bind to 0, inside the
    ephemeral range) was taken by a client connection in CI, and the server could not bind."""
    import random
    import socket

    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = range(10_000, max(low, 20_000))
    handed: set[int] = set()
    draw = random.Random()

    def port() -> int:
        for _ in range(1000):
            chosen = draw.choice(candidates)
            if chosen in handed:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", chosen))
                except OSError:
                    continue
            handed.add(chosen)
            return chosen
        raise RuntimeError(f"no free port in {candidates}")
    return port


@pytest.fixture(scope="session")
def wait_until_ready():
    """A function that waits for a started server to answer /readyz; the test fails with the end of
    the server's log if it exits first or is not ready in time (the server is then stopped)."""
    import time

    import httpx

    def wait(server, base: str, log, seconds: float = 180) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"server exited with {server.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        server.terminate()
        pytest.fail(f"not ready after {seconds:.0f} s:\n{log.read_text()[-4000:]}")
    return wait
