"""The README's command-line synopsis lists exactly the flags of every command."""

import argparse
import re
from pathlib import Path

import pytest

from calibkeras import cli

README = Path(__file__).resolve().parents[2] / "README.md"
FLAG = re.compile(r"(?<![\w-])(--?[a-z][\w-]*)")


def synopsis():
    """``{command: text}`` of the code block under "## The command line"; the line of
    ``calibkeras --version | --help ...`` is the command ``""``."""
    text = README.read_text()
    block = text.split("## The command line", 1)[1].split("```", 2)[1]
    entries, command = {}, None
    for line in block.strip("\n").splitlines():
        if line.startswith("calibkeras "):
            word = line.split()[1]
            command = "" if word.startswith("-") else word
            entries[command] = ""
        entries[command] += line + "\n"
    return entries


def parser_flags():
    """``{command: flags}`` from the parser itself (without -h/--help); ``""`` for the
    top level."""
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = {"": {"--version", "--help"}}
    for name, subparser in commands.choices.items():
        flags[name] = {option for action in subparser._actions
                       if not isinstance(action, argparse._HelpAction)
                       for option in action.option_strings if option.startswith("--")}
    return flags


def test_the_synopsis_has_every_command():
    assert set(synopsis()) == set(parser_flags())


@pytest.mark.parametrize("command", sorted(parser_flags()))
def test_the_synopsis_lists_exactly_the_flags_of_each_command(command):
    listed = set(FLAG.findall(synopsis()[command]))
    listed -= {"--help"} if command else set()  # "COMMAND --help" on the last line
    flags = parser_flags()[command]
    assert listed == flags, (f"README synopsis of `calibkeras {command}`: missing "
                             f"{sorted(flags - listed)}, not flags {sorted(listed - flags)}")


def test_the_synopsis_flags_are_those_of_help(capsys, monkeypatch):
    # The same as parsing --help's text: each command's help names each of its flags,
    # none broken across lines at a hyphen.
    monkeypatch.setenv("COLUMNS", "80")
    for command, flags in parser_flags().items():
        if not command:
            continue
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        shown = set(FLAG.findall(capsys.readouterr().out)) - {"-h", "--help"}
        assert shown == flags, command
