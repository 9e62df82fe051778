"""Users of the review app: names, roles and argon2id password hashes.

Roles (enforced by the server, see ``docs/review.md``):

* ``annotator``: opens cases and edits their segmentations (issue 13); cannot decide;
* ``reviewer``: everything an annotator may, plus the decisions (approve, needs revision,
  exclude);
* ``admin``: everything, plus managing users.

A password is hashed with argon2id (``argon2-cffi``, its default parameters) and only the
hash is stored; the password itself is never logged, printed or written anywhere.
"""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from brainmets.catalog import Catalog, UserRecord

#: the roles, least to most allowed
ROLES = ("annotator", "reviewer", "admin")
#: a user name: letters, digits, ``.``, ``_``, ``-``; 1-64 characters, starting alphanumeric
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: the shortest password accepted
MIN_PASSWORD_LENGTH = 10

_HASHER = PasswordHasher()


class UserError(ValueError):
    """A user that cannot be added or changed (bad name, role or password; a duplicate)."""


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string) of ``password``, after checking its length."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (False for a malformed hash)."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    return role


def add_user(catalog: Catalog, name: str, role: str, password: str) -> UserRecord:
    """Add a user with a new password (hashed here); a duplicate name is refused."""
    if not NAME_RE.match(name):
        raise UserError(
            f"user name {name!r}: 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    check_role(role)
    if catalog.user(name) is not None:
        raise UserError(f"user {name!r} exists already")
    catalog.add_user(name, role, hash_password(password))
    user = catalog.user(name)
    assert user is not None
    return user


def authenticate(catalog: Catalog, name: str, password: str) -> UserRecord | None:
    """The user when ``name`` and ``password`` match an enabled user, else None. A hash made
    with older argon2 parameters is replaced by one with the current parameters."""
    user = catalog.user(name)
    if user is None:
        _HASHER.hash(password)  # about the same time as a real check: no user enumeration
        return None
    if user.disabled_at is not None or not verify_password(user.password_hash, password):
        return None
    if _HASHER.check_needs_rehash(user.password_hash) and not catalog.readonly:
        catalog.set_user(name, password_hash=_HASHER.hash(password))
    return user
