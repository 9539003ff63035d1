"""`python -m server` runs the `tokenwire` command."""

from server.cli import main

main()
