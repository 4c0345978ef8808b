"""Who may use the service: API keys for the claims system, logins for adjusters on the page.

Keys and passwords are stored only as hashes: a key is 32 random bytes, so SHA-256 of it is
enough; a password is a person's choice, so it gets scrypt with its own salt. Page sessions are
random tokens, also stored hashed, that expire; a password change or a removal ends them. `claimtriage
keys ...` and `claimtriage adjusters ...` create and revoke them; on a store with neither, the first
`claimtriage serve` creates one key and one adjuster login and prints them once.

Logins are throttled in the database, so every replica sees the same count: after
`login_failures_per_user` wrong passwords for one username, or `login_failures_per_address` from
one address, that username or address is locked out for `login_lockout_minutes`, and even the
right password is refused until then.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from datetime import datetime, timedelta

import sqlalchemy as sa

from models.config import SecurityConfig
from serving.clock import utc_now

log = logging.getLogger("claimtriage.serving.access")
SESSION_HOURS = 12
KEY_CACHE_SECONDS = 30.0  # a revoked key stops working within this long on a running replica
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
# One scrypt at a time per process (~16 MiB and tens of milliseconds each): a flood of logins then
# holds one core at most, and scoring keeps the rest.
_SCRYPT_SLOT = threading.Lock()
_CSRF_PURPOSE = b"claimtriage form token"


class AccessError(ValueError):
    """A request to manage credentials that cannot be honoured (unknown name, name taken...)."""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    with _SCRYPT_SLOT:
        return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        candidate = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate.hex(), digest)


_UNKNOWN_USER_HASH: list[str] = []


def _unknown_user_hash() -> str:
    """A hash no password matches, checked for a username that has no login, so that an unknown
    username costs the same scrypt as a known one and timing does not tell which names exist."""
    if not _UNKNOWN_USER_HASH:
        _UNKNOWN_USER_HASH.append(hash_password(secrets.token_urlsafe(32)))
    return _UNKNOWN_USER_HASH[0]


def form_token(session_token: str) -> str:
    """The CSRF token of a session's forms: derived from the session's secret token, so another
    site (which cannot read the cookie) cannot produce it, and any replica can check it."""
    return hmac.new(session_token.encode(), _CSRF_PURPOSE, hashlib.sha256).hexdigest()


def form_token_matches(session_token: str | None, sent: str | None) -> bool:
    return bool(session_token and sent) and hmac.compare_digest(form_token(session_token).encode(), sent.encode())


class Access:
    """The credential tables of one claim store."""

    def __init__(self, metadata: sa.MetaData):
        self.keys = sa.Table(
            "api_keys", metadata,
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(128), nullable=False, unique=True),
            sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
            sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.Column("revoked_at", sa.DateTime(), nullable=True))
        self.adjusters = sa.Table(
            "adjusters", metadata,
            sa.Column("username", sa.String(128), primary_key=True),
            sa.Column("password_hash", sa.String(256), nullable=False),
            sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.Column("revoked_at", sa.DateTime(), nullable=True))
        self.sessions = sa.Table(
            "sessions", metadata,
            sa.Column("token_hash", sa.String(64), primary_key=True),
            sa.Column("username", sa.String(128), nullable=False),
            sa.Column("expires_at", sa.DateTime(), nullable=False))
        # Wrong logins, per username ("user") and per client address ("address"): the failures
        # counted since `since`, and, once too many, the moment the lock-out ends.
        self.login_failures = sa.Table(
            "login_failures", metadata,
            sa.Column("kind", sa.String(16), primary_key=True),
            sa.Column("subject", sa.String(256), primary_key=True),
            sa.Column("failures", sa.Integer(), nullable=False),
            sa.Column("since", sa.DateTime(), nullable=False),
            sa.Column("locked_until", sa.DateTime(), nullable=True))
        self._valid_keys: dict[str, tuple[str, float]] = {}
        self.key_cache_seconds = KEY_CACHE_SECONDS
        self.clock = time.monotonic  # for the key cache only; tests may turn it forward

    # --- API keys

    def create_key(self, engine: sa.Engine, name: str) -> str:
        """A new key for `name`; the only time its text exists outside the caller."""
        key = "ct_" + secrets.token_urlsafe(32)
        with engine.begin() as conn:
            if conn.execute(sa.select(self.keys.c.id).where(self.keys.c.name == name)).first():
                raise AccessError(f"a key named {name!r} exists already; revoke it or choose another name")
            conn.execute(self.keys.insert().values(name=name, key_hash=_sha256(key), created_at=utc_now()))
        return key

    def revoke_key(self, engine: sa.Engine, name: str) -> None:
        with engine.begin() as conn:
            done = conn.execute(self.keys.update().where(self.keys.c.name == name, self.keys.c.revoked_at.is_(None))
                                .values(revoked_at=utc_now())).rowcount
        if not done:
            raise AccessError(f"no active key named {name!r}")
        self._valid_keys.clear()

    def list_keys(self, engine: sa.Engine) -> list[dict]:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(self.keys.c.name, self.keys.c.created_at, self.keys.c.revoked_at).order_by(self.keys.c.id))]

    def key_owner(self, engine: sa.Engine, key: str) -> str | None:
        """The name of an active key, or None. Valid keys are remembered briefly (no query per request)."""
        digest = _sha256(key)
        cached = self._valid_keys.get(digest)
        if cached is not None and self.clock() - cached[1] < self.key_cache_seconds:
            return cached[0]
        with engine.connect() as conn:
            row = conn.execute(sa.select(self.keys.c.name).where(self.keys.c.key_hash == digest,
                                                                 self.keys.c.revoked_at.is_(None))).first()
        if row is None:
            self._valid_keys.pop(digest, None)
            return None
        self._valid_keys[digest] = (row.name, self.clock())
        return row.name

    # --- adjusters and their sessions

    def add_adjuster(self, engine: sa.Engine, username: str, password: str | None = None) -> str:
        """Create (or re-enable with a new password) an adjuster; returns the password. A new
        password ends every session of the old one: whoever knew the old password is logged out."""
        if not username or len(username) > 128:
            raise AccessError("a username is 1 to 128 characters")
        password = password or secrets.token_urlsafe(12)
        if len(password) < 10:
            raise AccessError("a password has at least 10 characters")
        with engine.begin() as conn:
            conn.execute(self.adjusters.delete().where(self.adjusters.c.username == username))
            conn.execute(self.adjusters.insert().values(username=username, password_hash=hash_password(password),
                                                        created_at=utc_now()))
            conn.execute(self.sessions.delete().where(self.sessions.c.username == username))
        return password

    def remove_adjuster(self, engine: sa.Engine, username: str) -> None:
        with engine.begin() as conn:
            done = conn.execute(self.adjusters.update().where(self.adjusters.c.username == username,
                                                              self.adjusters.c.revoked_at.is_(None))
                                .values(revoked_at=utc_now())).rowcount
            conn.execute(self.sessions.delete().where(self.sessions.c.username == username))
        if not done:
            raise AccessError(f"no active adjuster {username!r}")

    def list_adjusters(self, engine: sa.Engine) -> list[dict]:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(self.adjusters.c.username, self.adjusters.c.created_at, self.adjusters.c.revoked_at)
                .order_by(self.adjusters.c.username))]

    def login(self, engine: sa.Engine, username: str, password: str, address: str | None = None,
              limits: SecurityConfig = SecurityConfig(), now: datetime | None = None) -> str | None:
        """A session token for a right username and password, else None (which of the two was wrong is
        not said). A username or `address` locked out by earlier failures gets None whatever the
        password; every wrong login counts against both."""
        now = now or utc_now()
        subjects = [("user", username)] + ([("address", address)] if address else [])
        locked = self._locked_until(engine, subjects, now)
        if locked is not None:
            log.warning("login refused: %s %r is locked out until %s", locked[0], locked[1], locked[2])
            return None
        with engine.connect() as conn:
            row = conn.execute(sa.select(self.adjusters.c.password_hash).where(
                self.adjusters.c.username == username, self.adjusters.c.revoked_at.is_(None))).first()
        stored = _unknown_user_hash() if row is None else row.password_hash
        if not password_matches(password, stored) or row is None:
            self._count_failure(engine, subjects, limits, now)
            return None
        token = secrets.token_urlsafe(32)
        with engine.begin() as conn:
            conn.execute(self.login_failures.delete().where(self.login_failures.c.kind == "user",
                                                            self.login_failures.c.subject == username))
            conn.execute(self.sessions.insert().values(token_hash=_sha256(token), username=username,
                                                       expires_at=now + timedelta(hours=SESSION_HOURS)))
        return token

    def _locked_until(self, engine: sa.Engine, subjects: list[tuple[str, str]], now: datetime):
        """(kind, subject, until) of the first of `subjects` locked out at `now`, or None."""
        f = self.login_failures.c
        with engine.connect() as conn:
            row = conn.execute(sa.select(f.kind, f.subject, f.locked_until).where(
                sa.or_(*[(f.kind == kind) & (f.subject == subject) for kind, subject in subjects]),
                f.locked_until > now).limit(1)).first()
        return None if row is None else tuple(row)

    def _count_failure(self, engine: sa.Engine, subjects: list[tuple[str, str]], limits: SecurityConfig,
                       now: datetime) -> None:
        """One more wrong login for each subject, counted by one UPDATE in the database (replicas
        counting at once lose no failure); reaching the limit starts a lock-out and a fresh count."""
        f = self.login_failures.c
        window = timedelta(minutes=limits.login_lockout_minutes)
        limit = {"user": limits.login_failures_per_user, "address": limits.login_failures_per_address}
        # Failures older than a lock-out's length are forgotten: a slow trickle never locks anyone out.
        recent = f.since > now - window
        counted = {"failures": sa.case((recent, f.failures + 1), else_=1),
                   "since": sa.case((recent, f.since), else_=now)}
        for kind, subject in subjects:
            this = (f.kind == kind) & (f.subject == subject)
            for _ in range(3):  # a first failure counted by two replicas at once: one inserts, one retries
                try:
                    with engine.begin() as conn:
                        if not conn.execute(self.login_failures.update().where(this).values(**counted)).rowcount:
                            conn.execute(self.login_failures.insert().values(kind=kind, subject=subject, failures=1,
                                                                             since=now, locked_until=None))
                        conn.execute(self.login_failures.update().where(this, f.failures >= limit[kind])
                                     .values(failures=0, since=now, locked_until=now + window))
                    break
                except sa.exc.IntegrityError:
                    continue

    def session_user(self, engine: sa.Engine, token: str, now: datetime | None = None) -> str | None:
        """The adjuster a session belongs to, while it has not expired and the adjuster is not removed."""
        s, a = self.sessions.c, self.adjusters.c
        with engine.connect() as conn:
            row = conn.execute(sa.select(s.username).join_from(self.sessions, self.adjusters, s.username == a.username)
                               .where(s.token_hash == _sha256(token), s.expires_at > (now or utc_now()),
                                      a.revoked_at.is_(None))).first()
        return None if row is None else row.username

    def logout(self, engine: sa.Engine, token: str) -> None:
        with engine.begin() as conn:
            conn.execute(self.sessions.delete().where(self.sessions.c.token_hash == _sha256(token)))

    def bootstrap(self, engine: sa.Engine) -> tuple[str, str, str] | None:
        """On a store with no keys and no adjusters: one key and one adjuster login, to print once."""
        with engine.connect() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(self.keys)).scalar_one() or \
                    conn.execute(sa.select(sa.func.count()).select_from(self.adjusters)).scalar_one():
                return None
        key = self.create_key(engine, "default")
        password = self.add_adjuster(engine, "admin")
        return key, "admin", password
