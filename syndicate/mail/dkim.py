"""DKIM signing (RFC 6376, relaxed header and simple or relaxed body canonicalization; rsa-sha256 and RFC 8463 ed25519-sha256) of the exact bytes a backend sends.

The signature is computed here with `cryptography` (OpenSSL) rather than dkimpy's pure-Python RSA,
which costs several milliseconds a message; the tests verify what this signs with dkimpy's verifier.
`cryptography` is imported when a key is loaded or made: a process that signs nothing (no
`[dkim]`: every digest send, the CLI) does not map its 8 MB of OpenSSL bindings.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from syndicate.errors import ConfigError
from syndicate.mail.base import MailBackend, OutgoingMessage, SendResult

ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
_WSP_RUN = re.compile(rb"[ \t]+")
_WSP_TO_FOLD = re.compile(rb"[ \t]{2,}|\t")  # what relaxed canonicalization changes: a single space stays
_FOLD = re.compile(rb"\r\n(?=[ \t])")


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4: trailing whitespace of each line removed, runs of whitespace made one space,
    empty lines at the end removed, a final CRLF kept (an empty body stays empty)."""
    # Plain bytes operations where they do: regular expressions over a 20 kB digest cost milliseconds.
    if b"\t" in body or b"  " in body:
        body = _WSP_TO_FOLD.sub(b" ", body)
    body = body.replace(b" \r\n", b"\r\n").rstrip(b"\r\n")  # runs are single spaces now
    return body + b"\r\n" if body else b""


def simple_body(body: bytes) -> bytes:
    """RFC 6376 3.4.3: the body as it is, without the empty lines at its end (an empty body is one CRLF)."""
    return body.rstrip(b"\r\n") + b"\r\n"


BODY_CANONICALIZATIONS = {"simple": simple_body, "relaxed": relaxed_body}


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """RFC 6376 3.4.2: name in lower case, value unfolded, whitespace runs made one space, trimmed."""
    value = _WSP_RUN.sub(b" ", _FOLD.sub(b"", value)).strip(b" \t\r\n")
    return name.strip().lower() + b":" + value + b"\r\n"


def split_headers(head: bytes) -> list[tuple[bytes, bytes]]:
    """(name, raw value with its folds) for each header field of a CRLF header block."""
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        elif b":" in line:
            name, value = line.split(b":", 1)
            fields.append((name, value))
    return fields


class DkimSigner:
    """Signs messages for `domain` with selector `selector` and a private key (PEM bytes)."""

    def __init__(self, domain: str, selector: str, private_key: bytes, algorithm: str = "rsa-sha256",
                 headers: Sequence[str] = ("From", "To", "Subject", "Date", "Message-ID"), *,
                 clock: Callable[[], float] = time.time, source: str = "[dkim] private_key_file",
                 body_canonicalization: str = "simple") -> None:
        if algorithm not in ALGORITHMS:
            raise ConfigError([f"[dkim] algorithm: expected one of {', '.join(ALGORITHMS)}, got {algorithm!r}"])
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

        try:
            key = serialization.load_pem_private_key(private_key, password=None)
        except (ValueError, TypeError) as e:
            raise ConfigError([f"{source}: not a PEM private key without a passphrase ({e})"]) from None
        wanted = rsa.RSAPrivateKey if algorithm == "rsa-sha256" else ed25519.Ed25519PrivateKey
        if not isinstance(key, wanted):
            raise ConfigError([f"{source}: a {type(key).__name__.replace('_', '')} does not sign {algorithm}"])
        if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 1024:
            raise ConfigError([f"{source}: RSA keys under 1024 bits are refused by verifiers (got {key.key_size})"])
        self.domain = domain
        self.selector = selector
        self.algorithm = algorithm
        self._key: Any = key
        # rsa-sha256 signs the canonical bytes with PKCS#1 v1.5 over SHA-256; ed25519-sha256 signs their SHA-256 (RFC 8463)
        self._rsa: tuple[Any, Any] | None = (padding.PKCS1v15(), hashes.SHA256()) if isinstance(key, rsa.RSAPrivateKey) else None
        self._headers = [h.lower().encode("ascii") for h in headers]
        self._body = BODY_CANONICALIZATIONS[body_canonicalization]
        self._c = b"relaxed/" + body_canonicalization.encode()
        self._clock = clock

    def signature_header(self, data: bytes) -> bytes:
        """The DKIM-Signature header line (folded, ending with CRLF) for message `data`."""
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            head, body = data.rstrip(b"\r\n"), b""
        fields = split_headers(head)
        present: dict[bytes, list[bytes]] = {}
        for name, value in fields:
            present.setdefault(name.strip().lower(), []).append(value)
        signed: list[bytes] = []
        canonical = b""
        for name in self._headers:
            values = present.get(name)
            if values:  # the bottom-most instance (RFC 6376 5.4.2); ours are single
                canonical += relaxed_header(name, values[-1])
                signed.append(name)
        body_hash = base64.b64encode(hashlib.sha256(self._body(body)).digest())
        tags = (
            b"v=1; a=" + self.algorithm.encode() + b"; c=" + self._c + b"; d=" + self.domain.encode("ascii")
            + b"; s=" + self.selector.encode("ascii") + b"; t=" + str(int(self._clock())).encode()
            + b"; h=" + b":".join(signed) + b"; bh=" + body_hash + b"; b="
        )
        canonical += relaxed_header(b"dkim-signature", b" " + tags)[:-2]  # no CRLF after the signature field
        if self._rsa is not None:
            signature = self._key.sign(canonical, *self._rsa)
        else:
            signature = self._key.sign(hashlib.sha256(canonical).digest())
        b64 = base64.b64encode(signature)
        folded = b"\r\n\t".join(b64[i:i + 72] for i in range(0, len(b64), 72))
        return b"DKIM-Signature: " + tags.replace(b"; h=", b";\r\n\th=").replace(b"; bh=", b";\r\n\tbh=") + b"\r\n\t" + folded + b"\r\n"

    def sign(self, data: bytes) -> bytes:
        return self.signature_header(data) + data


class SigningBackend(MailBackend):
    """Wraps a backend: every message it is given is sent DKIM-signed, the signature over its exact bytes."""

    def __init__(self, inner: MailBackend, signer: DkimSigner) -> None:
        super().__init__()
        self.inner = inner
        self.signer = signer
        self.name = inner.name  # type: ignore[misc]

    @property
    def is_open(self) -> bool:
        return self.inner.is_open

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def signed(self, message: OutgoingMessage) -> OutgoingMessage:
        return replace(message, data=self.signer.sign(message.data))

    def send_messages(self, messages: Iterable[OutgoingMessage], *, stop: threading.Event | None = None) -> Iterator[SendResult]:
        return self.inner.send_messages((self.signed(m) for m in messages), stop=stop)

    def deliver(self, message: OutgoingMessage) -> SendResult:
        return self.inner.deliver(self.signed(message))

    def __getattr__(self, name: str) -> Any:  # the inner backend's own settings (e.g. smtp's endpoint)
        return getattr(self.inner, name)


def signer_from_file(domain: str, selector: str, key_file: Path, algorithm: str, headers: Sequence[str],
                     body_canonicalization: str = "simple") -> DkimSigner:
    try:
        pem = key_file.read_bytes()
    except OSError as e:
        raise ConfigError([f"[dkim] private_key_file: cannot read {key_file}: {e.strerror}"]) from None
    return DkimSigner(domain, selector, pem, algorithm, headers, source=f"[dkim] private_key_file {key_file}",
                      body_canonicalization=body_canonicalization)


def generate_key(algorithm: str, bits: int = 2048) -> tuple[bytes, str]:
    """(private key PEM, the DNS TXT value "v=DKIM1; k=...; p=...") for a new key pair."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    if algorithm == "rsa-sha256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        kind = "rsa"
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    elif algorithm == "ed25519-sha256":
        edkey = ed25519.Ed25519PrivateKey.generate()
        public = edkey.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        kind = "ed25519"
        pem = edkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    else:
        raise ValueError(f"unknown DKIM algorithm {algorithm!r}")
    return pem, f"v=DKIM1; k={kind}; p={base64.b64encode(public).decode('ascii')}"


def dns_record(selector: str, domain: str, txt: str) -> str:
    """The zone-file line to publish: long values split in 255-byte strings."""
    chunks = " ".join(f'"{txt[i:i + 255]}"' for i in range(0, len(txt), 255))
    return f"{selector}._domainkey.{domain}. IN TXT ( {chunks} )"
