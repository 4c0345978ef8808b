"""Credentials: keys and passwords kept as hashes, revocation, sessions, the first-start bootstrap."""

import logging
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from models.config import SecurityConfig
from serving import access as access_module
from serving.access import (KEY_CACHE_SECONDS, SESSION_HOURS, AccessError, form_token, form_token_matches,
                            password_matches)
from serving.clock import utc_now
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


# --- logins under attack: throttling and lock-out, kept in the database -------------------------

T0 = datetime(2025, 6, 1, 9, 0)
TIGHT = SecurityConfig(login_failures_per_user=3, login_failures_per_address=100, login_lockout_minutes=10.0)


def _try(access, engine, username, password, at_minutes, address="10.0.0.1", limits=TIGHT):
    return access.login(engine, username, password, address, limits, now=T0 + timedelta(minutes=at_minutes))


def test_wrong_passwords_lock_a_username_out_and_even_the_right_one_waits_for_the_end(store, caplog):
    access, engine = store.access, store.engine
    password = access.add_adjuster(engine, "ann")
    assert [_try(access, engine, "ann", "wrong", 0) for _ in range(3)] == [None] * 3
    with caplog.at_level(logging.WARNING, logger="claimtriage.serving.access"):
        assert _try(access, engine, "ann", password, 1, address="10.9.9.9") is None  # locked, from anywhere
    assert "'ann' is locked out until 2025-06-01 09:10:00" in caplog.text
    assert _try(access, engine, "ann", password, 9.9) is None
    assert _try(access, engine, "ann", password, 10.1) is not None  # the lock-out is over


def test_a_right_login_clears_the_count_and_old_failures_are_forgotten(store):
    access, engine = store.access, store.engine
    password = access.add_adjuster(engine, "ann")
    for round_start in (0, 1):
        assert [_try(access, engine, "ann", "wrong", round_start) for _ in range(2)] == [None, None]
        assert _try(access, engine, "ann", password, round_start) is not None  # 2 < 3, and the count restarts
    assert [_try(access, engine, "ann", "wrong", 2) for _ in range(2)] == [None, None]
    assert _try(access, engine, "ann", "wrong", 12.5) is None  # the first two are older than a lock-out
    assert _try(access, engine, "ann", password, 12.6) is not None


def test_wrong_logins_from_one_address_lock_that_address_out_for_every_username(store):
    access, engine = store.access, store.engine
    password = access.add_adjuster(engine, "ann")
    limits = SecurityConfig(login_failures_per_user=100, login_failures_per_address=4, login_lockout_minutes=10.0)
    for name in ("bob", "cy", "dee", "eve"):  # one guess each: no username reaches its own limit
        assert _try(access, engine, name, "guess", 0, address="203.0.113.7", limits=limits) is None
    assert _try(access, engine, "ann", password, 1, address="203.0.113.7", limits=limits) is None
    assert _try(access, engine, "ann", password, 1, address="198.51.100.2", limits=limits) is not None


def test_the_count_is_kept_in_the_database_so_every_replica_holds_the_lock(store, store_url):
    other = ClaimStore(store_url)  # a second replica on the same database
    password = store.access.add_adjuster(store.engine, "ann")
    for replica in (store, other, store):
        assert _try(replica.access, replica.engine, "ann", "wrong", 0) is None
    assert _try(other.access, other.engine, "ann", password, 1) is None
    assert _try(store.access, store.engine, "ann", password, 1) is None


def test_wrong_logins_counted_at_once_by_two_replicas_lose_none(store, store_url):
    other = ClaimStore(store_url)
    password = store.access.add_adjuster(store.engine, "ann")
    limits = SecurityConfig(login_failures_per_user=6, login_failures_per_address=100, login_lockout_minutes=10.0)
    replicas = [store, other] * 3
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda r: _try(r.access, r.engine, "ann", "wrong", 0, limits=limits), replicas))
    assert _try(store.access, store.engine, "ann", password, 1, limits=limits) is None  # all six counted


def test_an_unknown_username_costs_as_much_as_a_known_one(store):
    access, engine = store.access, store.engine
    password = access.add_adjuster(engine, "ann")
    roomy = SecurityConfig(login_failures_per_user=1000, login_failures_per_address=1000)

    def seconds(username, given):
        start = time.perf_counter()
        access.login(engine, username, given, "10.0.0.1", roomy)
        return time.perf_counter() - start
    known = statistics.median(seconds("ann", password) for _ in range(5))
    unknown = statistics.median(seconds(f"nobody-{i}", password) for i in range(5))
    assert unknown >= 0.5 * known, (unknown, known)  # scrypt against a stand-in hash, not a quick "no"


def test_scrypt_runs_one_at_a_time(store):
    """Logins from many connections queue for one scrypt, so they cannot take every core from scoring."""
    access, engine = store.access, store.engine
    password = access.add_adjuster(engine, "ann")
    with ThreadPoolExecutor(1) as pool:
        with access_module._SCRYPT_SLOT:
            pending = pool.submit(access.login, engine, "ann", password)
            time.sleep(0.5)
            assert not pending.done()  # waiting for the scrypt under way
        assert pending.result(timeout=30) is not None


# --- sessions and keys across replicas ---------------------------------------------------------

def test_a_new_password_ends_every_session_of_the_old(store):
    access, engine = store.access, store.engine
    old = access.add_adjuster(engine, "ann")
    token = access.login(engine, "ann", old)
    assert access.session_user(engine, token) == "ann"
    new = access.add_adjuster(engine, "ann", "a whole new password")
    assert access.session_user(engine, token) is None
    assert access.login(engine, "ann", old) is None and access.login(engine, "ann", new) is not None


def test_sessions_expire_and_end_on_every_replica(store, store_url):
    other = ClaimStore(store_url)
    password = store.access.add_adjuster(store.engine, "ann")
    token = store.access.login(store.engine, "ann", password)
    assert other.access.session_user(other.engine, token) == "ann"
    late = utc_now() + timedelta(hours=SESSION_HOURS, minutes=1)
    assert other.access.session_user(other.engine, token, now=late) is None  # expired, everywhere
    store.access.logout(store.engine, token)
    assert other.access.session_user(other.engine, token) is None
    token = store.access.login(store.engine, "ann", password)
    store.access.remove_adjuster(store.engine, "ann")
    assert other.access.session_user(other.engine, token) is None


def test_a_session_of_a_removed_adjuster_is_refused_even_if_its_row_is_left(store):
    access, engine = store.access, store.engine
    token = access.login(engine, "ann", access.add_adjuster(engine, "ann"))
    with engine.begin() as conn:  # as a store written by an earlier version might hold
        conn.execute(access.adjusters.update().values(revoked_at=utc_now()))
    assert access.session_user(engine, token) is None


def test_a_key_revoked_on_one_replica_stops_working_on_another_within_the_cache_time(store, store_url):
    other = ClaimStore(store_url)
    clock = [1000.0]
    other.access.clock = lambda: clock[0]
    key = store.access.create_key(store.engine, "claims-system")
    assert other.access.key_owner(other.engine, key) == "claims-system"  # now remembered there
    store.access.revoke_key(store.engine, "claims-system")
    assert store.access.key_owner(store.engine, key) is None  # at once on the replica that revoked it
    clock[0] += KEY_CACHE_SECONDS - 1
    assert other.access.key_owner(other.engine, key) == "claims-system"  # still within the cache time
    clock[0] += 1
    assert other.access.key_owner(other.engine, key) is None


def test_form_tokens_belong_to_their_session():
    assert form_token("session-a") != form_token("session-b") and len(form_token("session-a")) == 64
    assert form_token_matches("session-a", form_token("session-a"))
    assert not form_token_matches("session-a", form_token("session-b"))
    assert not form_token_matches("session-a", "") and not form_token_matches(None, form_token("session-a"))
    assert not form_token_matches("session-a", "ünïcode")  # refused, not an error
