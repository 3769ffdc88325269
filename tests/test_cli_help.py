"""Each command's ``--help``: plain text a person reads in a terminal."""

from __future__ import annotations

import argparse

import pytest

from signalbox import cli


def _commands() -> list[str]:
    parser = cli._build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    names = sorted(commands.choices)
    assert {"validate", "verify", "traffic"} <= set(names)
    return names


@pytest.mark.parametrize("command", _commands())
def test_help_has_no_restructuredtext_markup(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([command, "--help"]) == 0
    text = capsys.readouterr().out

    assert text.startswith(f"usage: signalbox {command}")
    assert "``" not in text
