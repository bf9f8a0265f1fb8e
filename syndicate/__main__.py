"""`python -m syndicate` runs the CLI."""

from syndicate.cli import entry

entry()
