"""Claim-store backends: SQLite always, PostgreSQL where one is reachable (a fresh database per run)."""

import uuid

import pytest

POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


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
    return _empty_store_url(request.param, tmp_path, postgres_database)


@pytest.fixture(params=["sqlite", "sqlite, history in SQL", "postgresql"])
def history_store(request, tmp_path, postgres_database):
    """A claim store each way it can count history: in memory (SQLite's default), in the database
    on SQLite, and in the database on PostgreSQL."""
    from serving.store import ClaimStore

    url = _empty_store_url(request.param.split(",")[0], tmp_path, postgres_database)
    return ClaimStore(url, history_in_memory=False if "SQL" in request.param else None)


def _empty_store_url(kind: str, tmp_path, postgres_database) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'claims.db'}"
    if postgres_database is None:
        pytest.skip("no PostgreSQL server reachable on 127.0.0.1:5432")
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_database)
    existing = sa.MetaData()
    existing.reflect(engine)
    existing.drop_all(engine)  # each test starts from an empty database
    engine.dispose()
    return postgres_database


@pytest.fixture(scope="session")
def free_port():
    """A function giving a port nobody listens on, for a server of the test's own."""
    import socket

    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
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
