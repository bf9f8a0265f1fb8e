"""`syndicate admin hash-password`: the argon2 hash of a console user's password, for `[[admin.users]]`."""

from __future__ import annotations

import sys

import click

from syndicate.web.passwords import hash_password


@click.group("admin")
def admin() -> None:
    """The operators' console."""


@admin.command("hash-password")
def hash_password_command() -> None:
    """Read a password (asked twice on a terminal, else one line on stdin) and print its argon2 hash."""
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 12:
        raise click.UsageError("the password is shorter than 12 characters")
    click.echo(hash_password(password))
