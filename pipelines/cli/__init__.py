"""The ``propensity`` command line: ``main`` parses the arguments and runs the subcommand."""

from pipelines.cli.main import main

__all__ = ["main"]
