"""The one exception hierarchy: every error a user can see, with a hint and an exit code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePath


class SyndicateError(Exception):
    """Base of every error syndicate reports to a user.

    `hint` says what to do about it; `exit_code` is what the CLI exits with.
    """

    exit_code = 1
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class ConfigError(SyndicateError):
    """The configuration file is missing, unreadable or invalid; `problems` lists them all."""

    exit_code = 2

    def __init__(self, problems: list[str], *, hint: str | None = None) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems), hint=hint)


class MissingSecretError(SyndicateError):
    """A feature needs a secret whose environment variable is not set."""

    exit_code = 2

    def __init__(self, what: str, variable: str) -> None:
        super().__init__(
            f"{what}: environment variable {variable} is not set",
            hint=f"export {variable}=... (the config names this variable; secrets never live in the file)",
        )
        self.variable = variable


class WeakSecretError(SyndicateError):
    """A secret is set but too short to resist guessing."""

    exit_code = 2

    def __init__(self, what: str, variable: str, length: int, minimum: int) -> None:
        super().__init__(
            f"{what}: environment variable {variable} holds {length} bytes; at least {minimum} are needed",
            hint=f"generate one: export {variable}=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')",
        )
        self.variable = variable


@dataclass(frozen=True)
class Problem:
    """One problem found in an input file, reported as `PATH:LINE: message`."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class ContentError(SyndicateError):
    """An article file cannot be read; the one error the article reader raises."""

    def __init__(self, path: PurePath, line: int, message: str) -> None:
        self.problem = Problem(Path(path), line, message)
        super().__init__(str(self.problem))

    @property
    def path(self) -> Path:
        return self.problem.path

    @property
    def line(self) -> int:
        return self.problem.line


class UsageError(SyndicateError):
    """A command-line argument or API value is invalid."""

    exit_code = 2


class MailError(SyndicateError):
    """The mail backend cannot work at all as configured (not one message's fate, which is a SendResult)."""


class MailAuthError(MailError):
    """The SMTP server refused our login; nothing was sent on that connection."""

    def __init__(self, server: str, username: str, reply: str) -> None:
        super().__init__(
            f"SMTP server {server} refused login for user {username!r}: {reply}",
            hint="check [smtp] username (the server may require one) and the password in the environment "
            "variable named by [smtp] password_env",
        )
        self.server = server
        self.username = username


class MailSecurityError(MailError):
    """TLS with the SMTP server failed (certificate not trusted, STARTTLS not offered, ...)."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(
            f"SMTP server {server}: secure connection failed: {reason}",
            hint="check [smtp] security and host; set [smtp] ca_file to trust a private CA",
        )
        self.server = server
