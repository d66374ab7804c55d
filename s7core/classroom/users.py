"""Who is using the app: a user's name and role, and what solo mode and the command line act as."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from s7core.errors import UserError

# A roster name or an identity provider's e-mail address, kept in lower case so "Alice" and "alice" are one user.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,99}$")


class ClassError(UserError):
    """Bad input to class mode: an unknown user, a bad name, a bad setting."""


class Role(str, enum.Enum):
    """What a user may do: a student works on their own runs, a teacher on every run and the class's settings."""

    STUDENT = "student"
    TEACHER = "teacher"

    def __str__(self) -> str:
        return self.value


ROLES = tuple(r.value for r in Role)


def parse_role(text: str) -> Role:
    """The role named by `text`; a ClassError listing the roles otherwise."""
    try:
        return Role(str(text).strip().lower())
    except ValueError:
        raise ClassError(f"unknown role {text!r}: use one of {', '.join(ROLES)}") from None


def normalise_name(name: str) -> str:
    """A user name as the roster keeps it (lower case, no surrounding blanks); a ClassError for a bad one."""
    clean = str(name).strip().lower()
    if not NAME_PATTERN.match(clean):
        raise ClassError(
            f"user name {name!r}: use 1 to 100 letters, digits or . _ @ + - (starting with a letter or digit)"
        )
    return clean


@dataclass(frozen=True)
class User:
    """A signed-in user (or what solo mode and the command line act as)."""

    name: str  # the key runs are owned by: a roster name, or the identity provider's e-mail
    role: Role
    display: str = ""  # a name to show, when the identity provider gives one
    signed_in: bool = True  # False for solo mode and the command line: the runs they make have no owner

    @property
    def is_teacher(self) -> bool:
        """Whether the user may see and manage every run and the class's settings."""
        return self.role is Role.TEACHER

    @property
    def owner(self) -> str | None:
        """What the runs this user makes record as their owner."""
        return self.name if self.signed_in else None

    @property
    def label(self) -> str:
        """How the sidebar names the user."""
        return self.display or self.name


# Solo mode (no sign-in) and the command line act with a teacher's rights; runs they make have no owner.
SOLO_USER = User("you", Role.TEACHER, "solo mode", signed_in=False)
COMMAND_LINE = User("command line", Role.TEACHER, signed_in=False)
