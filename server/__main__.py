"""`python -m server` runs the `tokenwire` command."""

from server.runtime.cli import main

main()
