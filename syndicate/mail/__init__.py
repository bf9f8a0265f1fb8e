"""Mail backends chosen by name from `[mail] backend`: smtp, file, console, memory."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from syndicate.config import MailSettings, SmtpSettings
from syndicate.errors import UsageError
from syndicate.mail.base import MailBackend, OutgoingMessage, RecipientRefusal, SendResult
from syndicate.mail.console import ConsoleBackend
from syndicate.mail.file import FileBackend
from syndicate.mail.memory import MemoryBackend
from syndicate.mail.smtp import SmtpBackend

__all__ = [
    "BACKENDS",
    "ConsoleBackend",
    "FileBackend",
    "MailBackend",
    "MemoryBackend",
    "OutgoingMessage",
    "RecipientRefusal",
    "SendResult",
    "SmtpBackend",
    "make_backend",
]


def _smtp(mail: MailSettings, smtp: SmtpSettings, environ: Any = None, **overrides: Any) -> SmtpBackend:
    """`overrides` replace [smtp] keys (validated like the file); `environ` stands in for os.environ."""
    try:
        options = SmtpSettings.model_validate({**smtp.model_dump(), **overrides})
    except ValidationError as e:
        raise UsageError(f"smtp backend overrides: {e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}") from None
    return SmtpBackend(options, environ=environ)


def _file(mail: MailSettings, smtp: SmtpSettings, folder: Any = None) -> FileBackend:
    return FileBackend(folder if folder is not None else mail.folder)


def _console(mail: MailSettings, smtp: SmtpSettings, stream: Any = None) -> ConsoleBackend:
    return ConsoleBackend(stream)


def _memory(mail: MailSettings, smtp: SmtpSettings) -> MemoryBackend:
    return MemoryBackend()


BACKENDS: dict[str, Callable[..., MailBackend]] = {
    "smtp": _smtp,
    "file": _file,
    "console": _console,
    "memory": _memory,
}


def make_backend(mail: MailSettings, smtp: SmtpSettings, **overrides: Any) -> MailBackend:
    """The backend named by `[mail] backend`, built from the [mail] and [smtp] sections; `backend=NAME` picks another.

    Overrides per backend: smtp takes any [smtp] key and `environ`; file takes `folder`;
    console takes `stream`; memory takes none.
    """
    name = overrides.pop("backend", mail.backend)
    factory = BACKENDS.get(name)
    if factory is None:
        raise UsageError(f"unknown mail backend {name!r} (expected one of {', '.join(BACKENDS)})")
    try:
        inspect.signature(factory).bind(mail, smtp, **overrides)
    except TypeError as e:
        raise UsageError(f"mail backend {name!r}: bad override: {e}") from None
    return factory(mail, smtp, **overrides)
