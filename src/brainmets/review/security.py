"""Sessions, CSRF tokens and the login rate limit of the review app.

* A session is a random ID in a signed cookie (``itsdangerous``, HMAC-SHA1 over the
  workspace's own session secret, with a timestamp): HttpOnly, SameSite=Strict, Path=/,
  expiring after :attr:`Sessions.ttl_s`. The server keeps the live sessions in memory, so
  logging out (or a restart of the server) ends a session even if its cookie is replayed.
* Every state-changing request carries the session's CSRF token in the ``X-CSRF-Token``
  header (it is handed out by ``POST /api/login`` and ``GET /api/session``); a request
  whose ``Origin`` is another site is refused as well.
* Failed logins are rate-limited per user name and per client address
  (:class:`LoginLimiter`).

The secret lives in ``private/review-session.key`` (mode 0600, created on first use); it is
not the de-identification key.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SESSION_COOKIE = "bm_session"
CSRF_HEADER = "x-csrf-token"
SECRET_NAME = "review-session.key"


def session_secret(private_dir: Path) -> bytes:
    """The review app's signing secret, created (32 random bytes, mode 0600) when missing."""
    path = private_dir / SECRET_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        data = path.read_bytes()
        if len(data) < 32:
            raise RuntimeError(
                f"{path}: session secret is too short; delete it to make a new one"
            ) from None
        return data
    try:
        os.write(fd, secrets.token_bytes(32))
        os.fsync(fd)
    finally:
        os.close(fd)
    return path.read_bytes()


@dataclass(frozen=True)
class Session:
    """A logged-in user's session."""

    sid: str
    user: str
    csrf: str
    created: float
    expires: float


class Sessions:
    """The live sessions of one server and the signed cookies that name them."""

    def __init__(self, secret: bytes, ttl_s: float = 8 * 3600) -> None:
        self.ttl_s = float(ttl_s)
        self._signer = URLSafeTimedSerializer(secret, salt="brainmets-review-session")
        self._live: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: str) -> tuple[str, Session]:
        """A new session for ``user``: (cookie value, session)."""
        now = time.time()
        s = Session(
            secrets.token_urlsafe(24), user, secrets.token_urlsafe(24), now, now + self.ttl_s
        )
        with self._lock:
            self._live = {k: v for k, v in self._live.items() if v.expires > now}
            self._live[s.sid] = s
        return self._signer.dumps(s.sid), s

    def lookup(self, cookie: str | None) -> Session | None:
        """The live session a cookie names (None: missing, forged, expired or ended)."""
        if not cookie:
            return None
        try:
            sid = self._signer.loads(cookie, max_age=max(1, int(self.ttl_s)))
        except (BadSignature, SignatureExpired):
            return None
        with self._lock:
            s = self._live.get(str(sid))
            if s is None:
                return None
            if s.expires <= time.time():
                del self._live[s.sid]
                return None
            return s

    def end(self, sid: str) -> None:
        with self._lock:
            self._live.pop(sid, None)

    def end_user(self, user: str) -> None:
        """End every session of ``user`` (disabled, or their password changed)."""
        with self._lock:
            self._live = {k: v for k, v in self._live.items() if v.user != user}


def csrf_ok(session: Session, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(session.csrf.encode(), str(token).encode())


class LoginLimiter:
    """At most ``attempts`` failed logins per ``window_s`` for one user name and for one
    client address; further attempts are refused (HTTP 429) until the window has passed,
    without checking the password."""

    def __init__(self, attempts: int = 5, window_s: float = 300.0) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def retry_after(self, *keys: str) -> float:
        """Seconds until a login for these keys is allowed again (0: allowed now)."""
        now = time.time()
        wait = 0.0
        with self._lock:
            for key in keys:
                q = self._recent(key, now)
                if len(q) >= self.attempts:
                    wait = max(wait, q[0] + self.window_s - now)
        return wait

    def failed(self, *keys: str) -> None:
        now = time.time()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, user_key: str) -> None:
        with self._lock:
            self._failures.pop(user_key, None)
