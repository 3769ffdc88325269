"""The ``signalbox`` command line: validate, stack, verify, traffic."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from signalbox import __version__
from signalbox.report import EXIT_MISUSE


class _PlainParser(argparse.ArgumentParser):
    """Help in plain text: the docstrings used as descriptions are reStructuredText, whose
    double-backtick literals mean nothing in a terminal. Subcommands inherit the class."""

    def format_help(self) -> str:
        return super().format_help().replace("``", "")


def _build_parser() -> argparse.ArgumentParser:
    parser = _PlainParser(
        prog="signalbox",
        description="Validate the Signalbox bundle offline and verify a running stack.",
    )
    parser.add_argument("--version", action="version", version=f"signalbox {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Imported here: each command module imports UsageError from this one.
    from signalbox import stack, traffic, validate, verify

    for command in (validate, stack, verify, traffic):
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on misuse, 0 on --help
        return int(exc.code or 0)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("signalbox: interrupted", file=sys.stderr)
        return 130
    except UsageError as exc:
        print(f"signalbox: {exc}", file=sys.stderr)
        return EXIT_MISUSE


class UsageError(Exception):
    """Raised by a command for misuse (bad flags or inputs): reported on stderr, exit 2."""


if __name__ == "__main__":
    sys.exit(main())
