"""Who may use the studio: named users whose tokens are stored only as hashes, plus one admin token from the env.

`dreammover studio add-user NAME` prints a token once; `users.json` (in the studio's home, written atomically,
mode 0600) keeps its SHA-256. Tokens are 32 random bytes, so a fast hash is enough: nothing to brute-force.
The server re-reads the file when it changes on disk, so a revoke from the CLI takes effect at once.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ENV_TOKEN = "DREAMMOVER_STUDIO_TOKEN"
COOKIE = "dreammover_studio"
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")


@dataclass(frozen=True)
class Principal:
    """The caller of one request: a user name, and whether it sees and acts on every user's jobs."""

    name: str
    admin: bool = False

    def may_see(self, owner: str | None) -> bool:
        return self.admin or owner == self.name


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserError(ValueError):
    """A user command that cannot be done as asked; the message says why."""


class UserStore:
    """`users.json`: {name: {hash, admin, created}}; every write goes to a temporary file, then os.replace."""

    def __init__(self, home: str | Path):
        self.path = Path(home) / "users.json"
        self._lock = threading.Lock()
        self._seen: tuple | None = None
        self._users: dict[str, dict] = {}

    def _read(self) -> dict[str, dict]:
        """The users on disk, re-read only when the file changed (size, mtime)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._seen, self._users = None, {}
            return self._users
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._seen:
            try:
                users = json.loads(self.path.read_text()).get("users", {})
            except (OSError, ValueError) as err:
                raise UserError(f"{self.path} is not a readable users file ({err}): fix or remove it") from None
            self._seen, self._users = stamp, users
        return self._users

    def _write(self, users: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".users-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"users": users}, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)  # readers see the old file or the new one, never half of one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def add(self, name: str, admin: bool = False) -> str:
        """A new user; returns its token (shown once: only the hash is kept)."""
        if not NAME.match(name):
            raise UserError(f"user name {name!r}: use 1-32 lower-case letters, digits, '.', '_' or '-'")
        with self._lock:
            users = dict(self._read())
            if name in users:
                raise UserError(f"user {name!r} exists: revoke it first to issue a new token")
            token = secrets.token_urlsafe(32)
            users[name] = {"hash": token_hash(token), "admin": bool(admin), "created": time.time()}
            self._write(users)
        return token

    def revoke(self, name: str) -> None:
        with self._lock:
            users = dict(self._read())
            if name not in users:
                raise UserError(f"no user {name!r} (see list-users)")
            del users[name]
            self._write(users)

    def list(self) -> list[dict]:
        with self._lock:
            users = self._read()
        return [{"name": k, "admin": v.get("admin", False), "created": v.get("created")}
                for k, v in sorted(users.items())]

    def find(self, token: str) -> Principal | None:
        digest = token_hash(token)
        with self._lock:
            users = self._read()
        for name, rec in users.items():
            if hmac.compare_digest(rec.get("hash", ""), digest):
                return Principal(name, bool(rec.get("admin")))
        return None


class Auth:
    """Turns a request's bearer token or sign-in cookie into a Principal; `enabled=False` is --no-auth."""

    def __init__(self, users: UserStore | None, env_token: str | None = None, enabled: bool = True):
        self.users, self.env_token, self.enabled = users, env_token or None, enabled

    @classmethod
    def off(cls) -> "Auth":
        return cls(None, None, enabled=False)

    def identify(self, token: str | None) -> Principal | None:
        if not self.enabled:
            return Principal("local", admin=True)
        if not token:
            return None
        if self.env_token and hmac.compare_digest(token_hash(token), token_hash(self.env_token)):
            return Principal("admin", admin=True)
        return self.users.find(token) if self.users is not None else None

    @staticmethod
    def token_of(headers: dict[str, str], cookies: dict[str, str]) -> str | None:
        """The bearer token of `Authorization`, else the sign-in cookie's."""
        value = headers.get("authorization", "")
        if value[:7].lower() == "bearer ":
            return value[7:].strip() or None
        return cookies.get(COOKIE) or None
