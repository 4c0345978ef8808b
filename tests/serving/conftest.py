"""Claim-store backends: SQLite always, PostgreSQL where one is reachable (a fresh database per run).

CLAIMTRIAGE_TEST_POSTGRES_URL names another server (or, to see the suite without one, an unreachable
address); CLAIMTRIAGE_REQUIRE_POSTGRES=1 makes its absence a failure (see tests/conftest.py)."""

import os
import uuid
from dataclasses import replace

import pytest

POSTGRES_ADMIN = os.environ.get("CLAIMTRIAGE_TEST_POSTGRES_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# Marks each test that needed PostgreSQL and did without, for the summary's banner (tests/conftest.py).
WITHOUT_POSTGRES = ("claimtriage", "without PostgreSQL")


def _postgres_url():
    """A new, empty PostgreSQL database for this test session, or None where no server answers."""
    import sqlalchemy as sa

    try:
        admin = sa.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 2})
        name = f"claimtriage_test_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception:  # noqa: BLE001 - no server here is a fact about the machine, not a failure
        return None, None
    return admin, name


@pytest.fixture(scope="session")
def postgres_database():
    admin, name = _postgres_url()
    if admin is None:
        yield None
        return
    yield POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    import sqlalchemy as sa

    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path, postgres_database):
    return _empty_store_url(request.param, tmp_path, postgres_database, request)


@pytest.fixture(params=["sqlite", "sqlite, history in SQL", "postgresql"])
def history_store(request, tmp_path, postgres_database):
    """A claim store each way it can count history: in memory (SQLite's default), in the database
    on SQLite, and in the database on PostgreSQL."""
    from serving.store import ClaimStore

    url = _empty_store_url(request.param.split(",")[0], tmp_path, postgres_database, request)
    return ClaimStore(url, history_in_memory=False if "SQL" in request.param else None)


def _empty_store_url(kind: str, tmp_path, postgres_database, request) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'claims.db'}"
    if postgres_database is None:
        _without_postgres(request)
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_database)
    existing = sa.MetaData()
    existing.reflect(engine)
    existing.drop_all(engine)  # each test starts from an empty database
    engine.dispose()
    return postgres_database


def _without_postgres(request) -> None:
    """Skip a test that needs PostgreSQL where none answers, or fail it if PostgreSQL is required:
    a run that quietly left the PostgreSQL store untested must not pass for one that tested it."""
    from sqlalchemy.engine import make_url

    where = make_url(POSTGRES_ADMIN)
    reason = f"no PostgreSQL server reachable on {where.host}:{where.port or 5432}"
    request.node.user_properties.append(WITHOUT_POSTGRES)
    if os.environ.get("CLAIMTRIAGE_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason}, and CLAIMTRIAGE_REQUIRE_POSTGRES=1 requires one", pytrace=False)
    pytest.skip(reason)


SERVICE_TRAINING_CLAIMS = 7_000


@pytest.fixture(scope="session")
def service(tmp_path_factory, free_port, wait_until_ready, empty_tracking_store):
    """One BentoML server on a registered champion (7,000 generated claims) and its own SQLite store,
    shared by every module that talks to it over HTTP. Holds an API key ("tests") and an adjuster
    login (ann / correct horse battery)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from models.config import load_config
    from models.pyfunc import load_bundle
    from serving.store import ClaimStore
    from tests.conftest import tracking_store_in
    from training.generate import generate_claims
    from training.train import run_training

    root = Path(__file__).resolve().parents[2]
    home = tmp_path_factory.mktemp("service")
    env = {"CLAIMTRIAGE_HOME": str(home), "MLFLOW_TRACKING_URI": tracking_store_in(home, empty_tracking_store),
           "CLAIMTRIAGE_DATABASE_URL": f"sqlite:///{home / 'claims.db'}", "BENTOML_DO_NOT_TRACK": "true",
           "BENTOML_HOME": str(home / "bentoml")}
    claims = generate_claims(SERVICE_TRAINING_CLAIMS + 400, seed=13)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.chdir(home)
        config = load_config()
        # Held-out evaluation only: the 15 cross-validation fits below cv_below_rows are not what the
        # servers' tests test, and took most of this fixture's training time.
        config = replace(config, training=replace(config.training, cv_below_rows=0))
        run_training(claims.head(SERVICE_TRAINING_CLAIMS), config, source="fixture")
        bundle = load_bundle("models:/claim-triage@champion")
    credentials = ClaimStore(env["CLAIMTRIAGE_DATABASE_URL"])
    key = credentials.access.create_key(credentials.engine, "tests")
    credentials.access.add_adjuster(credentials.engine, "ann", "correct horse battery")
    port = free_port()
    log = open(home / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", "serving.service:ClaimTriage", "--host", "127.0.0.1",
         "--port", str(port), "--working-dir", str(root)],
        cwd=home, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_until_ready(server, base, home / "server.log", seconds=120)
    typed = claims.sort_values("report_date", kind="stable").reset_index(drop=True)
    yield {"base": base, "bundle": bundle, "claims": typed, "store_url": env["CLAIMTRIAGE_DATABASE_URL"],
           "new": typed.iloc[SERVICE_TRAINING_CLAIMS:], "key": key, "auth": {"Authorization": f"Bearer {key}"},
           "log": home / "server.log", "home": home, "server": server}
    server.terminate()
    server.wait(timeout=30)
