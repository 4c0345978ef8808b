"""Credentials: keys and passwords kept as hashes, revocation, sessions, the first-start bootstrap."""

import pytest
import sqlalchemy as sa

from serving.access import AccessError, password_matches
from serving.store import ClaimStore


@pytest.fixture
def store(store_url):
    return ClaimStore(store_url)


def test_keys_work_until_revoked_and_are_kept_only_as_hashes(store):
    access, engine = store.access, store.engine
    key = access.create_key(engine, "claims-system")
    assert access.key_owner(engine, key) == "claims-system"
    assert access.key_owner(engine, key + "x") is None and access.key_owner(engine, "") is None
    with pytest.raises(AccessError, match="exists already"):
        access.create_key(engine, "claims-system")
    access.revoke_key(engine, "claims-system")
    assert access.key_owner(engine, key) is None
    with pytest.raises(AccessError, match="no active key"):
        access.revoke_key(engine, "claims-system")
    with engine.connect() as conn:
        assert key not in str(conn.execute(sa.select(access.keys)).all())


def test_adjusters_log_in_with_the_right_password_only_and_removal_ends_sessions(store):
    access, engine = store.access, store.engine
    password = access.add_adjuster(engine, "ann")
    assert len(password) >= 12
    assert access.login(engine, "ann", "wrong") is None and access.login(engine, "bob", password) is None
    token = access.login(engine, "ann", password)
    assert access.session_user(engine, token) == "ann" and access.session_user(engine, token + "x") is None
    with engine.connect() as conn:
        stored = conn.execute(sa.select(access.adjusters.c.password_hash)).scalar_one()
    assert password not in stored and password_matches(password, stored) and not password_matches("x", stored)
    access.remove_adjuster(engine, "ann")
    assert access.session_user(engine, token) is None and access.login(engine, "ann", password) is None
    with pytest.raises(AccessError, match="at least 10"):
        access.add_adjuster(engine, "cy", "short")


def test_first_start_creates_one_key_and_one_login_once(store):
    first = store.access.bootstrap(store.engine)
    assert first is not None
    key, username, password = first
    assert store.access.key_owner(store.engine, key) == "default"
    assert store.access.login(store.engine, username, password) is not None
    assert store.access.bootstrap(store.engine) is None
