"""`python -m syndicate` runs the CLI."""

from syndicate.cli import main

main()
