"""Mail backends chosen by name from `[mail] backend`: smtp, file, console, memory."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from syndicate.config import DkimSettings, MailSettings, SmtpSettings
from syndicate.errors import ConfigError, UsageError
from syndicate.mail.base import MailBackend, OutgoingMessage, RecipientRefusal, SendResult
from syndicate.mail.console import ConsoleBackend
from syndicate.mail.dkim import DkimSigner, SigningBackend, signer_from_file
from syndicate.mail.file import FileBackend
from syndicate.mail.memory import MemoryBackend
from syndicate.mail.smtp import SmtpBackend

__all__ = [
    "BACKENDS",
    "ConsoleBackend",
    "DkimSigner",
    "FileBackend",
    "MailBackend",
    "MemoryBackend",
    "OutgoingMessage",
    "RecipientRefusal",
    "SendResult",
    "SigningBackend",
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


def _file(mail: MailSettings, smtp: SmtpSettings, folder: Path | None = None) -> FileBackend:
    return FileBackend(folder if folder is not None else mail.folder)


def _console(mail: MailSettings, smtp: SmtpSettings, stream: TextIO | None = None) -> ConsoleBackend:
    return ConsoleBackend(stream)


def _memory(mail: MailSettings, smtp: SmtpSettings) -> MemoryBackend:
    return MemoryBackend()


BACKENDS: dict[str, Callable[..., MailBackend]] = {
    "smtp": _smtp,
    "file": _file,
    "console": _console,
    "memory": _memory,
}


def make_backend(mail: MailSettings, smtp: SmtpSettings, *, dkim: DkimSettings | None = None, **overrides: Any) -> MailBackend:
    """The backend named by `[mail] backend`, built from the [mail] and [smtp] sections; `backend=NAME` picks another.
    With `dkim` (the [dkim] section) naming a domain, every message it sends is DKIM-signed.

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
    backend = factory(mail, smtp, **overrides)
    if dkim is not None and dkim.domain:  # every message signed (#13)
        if dkim.private_key_file is None:
            raise ConfigError(["[dkim] private_key_file: required when [dkim] domain is set (make one with `syndicate dkim keygen`)"])
        backend = SigningBackend(backend, signer_from_file(dkim.domain, dkim.selector, dkim.private_key_file, dkim.algorithm, dkim.headers,
                                                         dkim.body_canonicalization))
    return backend
