"""The class roster, for a school without an identity provider: names, roles and salted password hashes.

ROOT/.class/roster.json holds each user's role and an argon2id hash of their password (argon2-cffi's
PasswordHasher: a fresh random salt per hash); never the password. It is written atomically, readable by the
server's user only. Wrong passwords are counted per user in ROOT/.class/sign_in_failures.json, so a new browser
session cannot reset the count: from the FREE_FAILURES-th wrong password on, that user must wait before the next
try, twice as long after each further one, up to MAX_WAIT_S. A right password clears the count.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from s7core.classroom.settings import private_folder, read_json_file, write_private_json
from s7core.classroom.users import ClassError, Role, User, normalise_name, parse_role
from s7core.runs.status import now

ROSTER_FILE = "roster.json"
FAILURES_FILE = "sign_in_failures.json"
LOCK_FILE = ".roster.lock"
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes any length; this only bounds the work a form can ask for
FREE_FAILURES = 3  # wrong passwords in a row before each further try has to wait
FIRST_WAIT_S = 2.0  # the wait after the FREE_FAILURES-th wrong password; doubled after each further one
MAX_WAIT_S = 300.0
ROSTER_FIX = "restore it from a copy, or delete it and add the users again with `python -m s7core class add`"


class SignInError(ClassError):
    """A sign-in the roster refuses: wrong name or password, or too many wrong tries."""


class TooManyAttempts(SignInError):
    """Repeated wrong passwords for one user: the next try has to wait."""

    def __init__(self, message: str, wait_s: float):
        super().__init__(message)
        self.wait_s = wait_s


def wait_after(failures: int) -> float:
    """Seconds a user must wait before the next try after `failures` wrong passwords in a row."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(FIRST_WAIT_S * 2 ** (failures - FREE_FAILURES), MAX_WAIT_S)


def check_password(password: str) -> str:
    """`password` if it is acceptable as a new password; a ClassError saying why not otherwise."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise ClassError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ClassError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")
    if password != password.strip():
        raise ClassError("the password starts or ends with a blank: remove it (blanks are easy to mistype)")
    return password


@dataclass(frozen=True)
class RosterEntry:
    """One user as the roster lists them (no hash: that never leaves the roster)."""

    name: str
    role: Role
    added: str


class Roster:
    """The roster file of a runs root: add, remove, list users, reset passwords, and check a sign-in."""

    def __init__(
        self,
        runs_dir: str | os.PathLike | None = None,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.folder = private_folder(runs_dir)
        self.path = self.folder / ROSTER_FILE
        self.hasher = hasher or PasswordHasher()
        self.clock = clock  # wall-clock seconds: the failure count outlives the process

    # ------------------------------------------------------------ managing users

    def users(self) -> list[RosterEntry]:
        """Every user, by name."""
        return [
            RosterEntry(name, Role(entry["role"]), entry.get("added", ""))
            for name, entry in sorted(self._read().items())
        ]

    def get(self, name: str) -> RosterEntry | None:
        """The user of that name, or None."""
        entry = self._read().get(normalise_name(name))
        return RosterEntry(normalise_name(name), Role(entry["role"]), entry.get("added", "")) if entry else None

    def add(self, name: str, role: Role | str, password: str) -> RosterEntry:
        """Add a user with a new password; refused when the name is taken."""
        name, role = normalise_name(name), parse_role(role) if isinstance(role, str) else role
        hashed = self.hasher.hash(check_password(password))
        with self._locked():
            users = self._read()
            if name in users:
                raise ClassError(f"{name} is already on the roster — use `class reset-password {name}` instead")
            users[name] = {"role": role.value, "hash": hashed, "added": now()}
            self._write(users)
        return RosterEntry(name, role, users[name]["added"])

    def remove(self, name: str) -> None:
        """Take a user off the roster (their runs stay, and stay theirs)."""
        name = normalise_name(name)
        with self._locked():
            users = self._read()
            if name not in users:
                raise ClassError(f"{name} is not on the roster — `python -m s7core class list` shows who is")
            del users[name]
            self._write(users)
            self._forget_failures(name)

    def reset_password(self, name: str, password: str) -> None:
        """Give a user a new password, and clear their count of wrong tries."""
        name = normalise_name(name)
        hashed = self.hasher.hash(check_password(password))
        with self._locked():
            users = self._read()
            if name not in users:
                raise ClassError(f"{name} is not on the roster — add them with `python -m s7core class add {name}`")
            users[name]["hash"] = hashed
            self._write(users)
            self._forget_failures(name)

    # ------------------------------------------------------------ signing in

    def verify(self, name: str, password: str) -> User:
        """The user, when `password` is theirs; a SignInError (wrong, or wait first) otherwise."""
        try:
            key = normalise_name(name)
        except ClassError:
            raise SignInError("wrong name or password — check both (the password is case-sensitive)") from None
        with self._locked():
            entry = self._read().get(key)
            wait = self._failures().get(key, {}).get("until", 0.0) - self.clock()
        if wait > 0:
            raise TooManyAttempts(
                f"too many wrong passwords for {key}: wait {math.ceil(wait)} s and try again "
                "(or ask your teacher to reset your password)",
                wait,
            )
        # The hash check runs outside the lock, so a class signing in at once is not served one at a time; an
        # unknown name costs a check too, so the time taken does not tell who is on the roster.
        matches = self._matches(entry["hash"] if entry is not None else self._decoy(), password)
        with self._locked():
            if not matches or entry is None:
                if entry is not None:  # only roster names are counted: a made-up name cannot grow the file
                    failures = self._failures()
                    count = int(failures.get(key, {}).get("count", 0)) + 1
                    failures[key] = {"count": count, "until": self.clock() + wait_after(count)}
                    write_private_json(self.folder / FAILURES_FILE, failures)
                raise SignInError("wrong name or password — check both (the password is case-sensitive)")
            self._forget_failures(key)
            users = self._read()
            if key in users and self.hasher.check_needs_rehash(users[key]["hash"]):  # the library got stronger
                users[key]["hash"] = self.hasher.hash(password)
                self._write(users)
        return User(key, Role(entry["role"]))

    def failures(self, name: str) -> int:
        """How many wrong passwords in a row the user has given."""
        with self._locked():
            return int(self._failures().get(normalise_name(name), {}).get("count", 0))

    # ------------------------------------------------------------ the files

    def _decoy(self) -> str:
        if not hasattr(self, "_decoy_hash"):
            self._decoy_hash = self.hasher.hash("not anyone's password")
        return self._decoy_hash

    def _matches(self, hashed: str, password: str) -> bool:
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
            return False
        try:
            return self.hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the roster and the failure counts (every server session and the command line take turns)."""
        with open(self.folder / LOCK_FILE, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read(self) -> dict[str, dict]:
        data = read_json_file(self.path, "roster", ROSTER_FIX)
        if data is None:
            return {}
        users = data.get("users")
        if not isinstance(users, dict) or not all(
            isinstance(e, dict) and e.get("role") in ("student", "teacher") and isinstance(e.get("hash"), str)
            for e in users.values()
        ):
            raise ClassError(f"{self.path}: the roster's users are damaged — {ROSTER_FIX}")
        return users

    def _write(self, users: dict[str, dict]) -> None:
        write_private_json(self.path, {"format": 1, "users": users})

    def _failures(self) -> dict[str, dict]:
        path = self.folder / FAILURES_FILE
        try:
            data = read_json_file(path, "sign-in failure counts", "delete it (the counts start again)")
        except ClassError:
            return {}  # a damaged count file must not lock the class out: counting starts again
        return {k: v for k, v in (data or {}).items() if isinstance(v, dict)}

    def _forget_failures(self, name: str) -> None:
        failures = self._failures()
        if failures.pop(name, None) is not None:
            write_private_json(self.folder / FAILURES_FILE, failures)


def roster_path(runs_dir: str | os.PathLike | None = None) -> Path:
    """Where the roster of a runs root is kept."""
    return private_folder(runs_dir) / ROSTER_FILE
