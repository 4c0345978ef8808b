"""The test suite says what it did not test: tests left without PostgreSQL are counted in a banner,
and fail instead when CLAIMTRIAGE_REQUIRE_POSTGRES=1 (tests/conftest.py)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# One store test, on SQLite and on PostgreSQL: the second needs a server.
STORE_TEST = "tests/serving/test_history_index.py::test_postgresql_counts_history_in_the_database"
NOWHERE = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # port 1: nothing listens, refused at once


def _pytest(tests: str = STORE_TEST, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMTRIAGE_")} | env
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", tests],
                          cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)


def test_tests_skipped_for_lack_of_postgresql_are_counted_in_a_banner_at_the_end():
    run = _pytest(CLAIMTRIAGE_TEST_POSTGRES_URL=NOWHERE)
    assert run.returncode == 0, run.stdout[-3000:]
    tail = run.stdout.splitlines()[-6:]
    assert "1 test skipped for lack of PostgreSQL" in tail[-5] and tail[-5].startswith("!!!"), tail
    assert "no PostgreSQL server reachable on 127.0.0.1:1" in tail[-4]
    assert "CLAIMTRIAGE_REQUIRE_POSTGRES=1" in tail[-2] and "1 passed, 1 skipped" in tail[-1], tail


def test_with_postgresql_required_its_absence_fails_the_run():
    run = _pytest(CLAIMTRIAGE_TEST_POSTGRES_URL=NOWHERE, CLAIMTRIAGE_REQUIRE_POSTGRES="1")
    assert run.returncode == 1, run.stdout[-3000:]
    assert "1 test failed for lack of PostgreSQL" in run.stdout
    assert "CLAIMTRIAGE_REQUIRE_POSTGRES=1 requires one" in run.stdout and "1 passed, 1 error" in run.stdout


def test_no_banner_when_nothing_went_without():
    # SQLite only: nothing needed PostgreSQL, so nothing is said about it.
    run = _pytest(STORE_TEST + "[sqlite]", CLAIMTRIAGE_TEST_POSTGRES_URL=NOWHERE)
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-3000:]
    assert "PostgreSQL" not in run.stdout
