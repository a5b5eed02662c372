"""``python -m dpps``: the ``dpps`` command (for environments without the console script)."""

from dpps.cli.main import main

main()
