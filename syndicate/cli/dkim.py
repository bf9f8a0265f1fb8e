"""`syndicate dkim keygen`: a DKIM key pair, and the DNS TXT record to publish."""

from __future__ import annotations

import os
from pathlib import Path

import click

from syndicate.cli import AppContext, pass_app
from syndicate.mail.dkim import ALGORITHMS, dns_record, generate_key


@click.group("dkim")
def dkim() -> None:
    """DKIM signing keys."""


@dkim.command("keygen")
@click.option("--algorithm", type=click.Choice(ALGORITHMS), default=None, help="Default: [dkim] algorithm.")
@click.option("--bits", type=click.IntRange(1024, 4096), default=2048, show_default=True, help="RSA key size.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Private key file (default: [dkim] private_key_file).")
@click.option("--domain", default=None, help="Default: [dkim] domain.")
@click.option("--selector", default=None, help="Default: [dkim] selector.")
@click.option("--force", is_flag=True, help="Replace an existing key file.")
@pass_app
def keygen(app: AppContext, algorithm: str | None, bits: int, out: Path | None, domain: str | None,
           selector: str | None, force: bool) -> None:
    """Write a new private key (mode 0600) and print the TXT record for SELECTOR._domainkey.DOMAIN."""
    settings = app.settings
    algorithm = algorithm or settings.dkim.algorithm
    path = out or settings.dkim.private_key_file
    domain = domain or settings.dkim.domain
    selector = selector or settings.dkim.selector
    if path is None:
        raise click.UsageError("no key file: pass --out PATH or set [dkim] private_key_file")
    if domain is None:
        raise click.UsageError("no domain: pass --domain or set [dkim] domain")
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists; pass --force to replace it (the published record must change too)")
    pem, txt = generate_key(algorithm, bits)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    click.echo(f"wrote {algorithm} private key to {path}", err=True)
    click.echo("publish this DNS record:", err=True)
    click.echo(dns_record(selector, domain, txt))
