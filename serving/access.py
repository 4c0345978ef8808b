"""Who may use the service: API keys for the claims system, logins for adjusters on the page.

Keys and passwords are stored only as hashes: a key is 32 random bytes, so SHA-256 of it is
enough; a password is a person's choice, so it gets scrypt with its own salt. Page sessions are
random tokens, also stored hashed, that expire. `claimtriage keys ...` and `claimtriage
adjusters ...` create and revoke them; on a store with neither, the first `claimtriage serve`
creates one key and one adjuster login and prints them once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import timedelta

import sqlalchemy as sa

from serving.clock import utc_now

SESSION_HOURS = 12
KEY_CACHE_SECONDS = 30.0  # a revoked key stops working within this long on a running replica
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}


class AccessError(ValueError):
    """A request to manage credentials that cannot be honoured (unknown name, name taken...)."""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate.hex(), digest)


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
        self._valid_keys: dict[str, tuple[str, float]] = {}

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
        if cached is not None and time.monotonic() - cached[1] < KEY_CACHE_SECONDS:
            return cached[0]
        with engine.connect() as conn:
            row = conn.execute(sa.select(self.keys.c.name).where(self.keys.c.key_hash == digest,
                                                                 self.keys.c.revoked_at.is_(None))).first()
        if row is None:
            self._valid_keys.pop(digest, None)
            return None
        self._valid_keys[digest] = (row.name, time.monotonic())
        return row.name

    # --- adjusters and their sessions

    def add_adjuster(self, engine: sa.Engine, username: str, password: str | None = None) -> str:
        """Create (or re-enable with a new password) an adjuster; returns the password."""
        if not username or len(username) > 128:
            raise AccessError("a username is 1 to 128 characters")
        password = password or secrets.token_urlsafe(12)
        if len(password) < 10:
            raise AccessError("a password has at least 10 characters")
        with engine.begin() as conn:
            conn.execute(self.adjusters.delete().where(self.adjusters.c.username == username))
            conn.execute(self.adjusters.insert().values(username=username, password_hash=hash_password(password),
                                                        created_at=utc_now()))
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

    def login(self, engine: sa.Engine, username: str, password: str) -> str | None:
        """A session token for a right username and password, else None (which of the two was wrong is not said)."""
        with engine.begin() as conn:
            row = conn.execute(sa.select(self.adjusters.c.password_hash).where(
                self.adjusters.c.username == username, self.adjusters.c.revoked_at.is_(None))).first()
            if row is None or not password_matches(password, row.password_hash):
                return None
            token = secrets.token_urlsafe(32)
            conn.execute(self.sessions.insert().values(token_hash=_sha256(token), username=username,
                                                       expires_at=utc_now() + timedelta(hours=SESSION_HOURS)))
        return token

    def session_user(self, engine: sa.Engine, token: str) -> str | None:
        with engine.connect() as conn:
            row = conn.execute(sa.select(self.sessions.c.username).where(
                self.sessions.c.token_hash == _sha256(token), self.sessions.c.expires_at > utc_now())).first()
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
