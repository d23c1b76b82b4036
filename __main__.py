"""`python -m kesheng` is the `kesheng` command."""

from kesheng.cli.main import main

main()
