"""Every command's --help is plain text (issue 13 defect 7: `compare --help`
printed a module docstring's reST markup)."""

from __future__ import annotations

import re

import pytest

from emu.cli import command_names, main

REST_MARKUP = re.compile(r"``|:(?:func|class|mod|meth|attr):`|^\.\. ", re.MULTILINE)


@pytest.mark.parametrize("command", command_names())
def test_help_has_no_rest_markup(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: ktext-emu {command}")
    assert not REST_MARKUP.search(out), REST_MARKUP.search(out).group(0)


def test_compare_help_describes_the_command(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = capsys.readouterr().out
    assert "Print what differs between two `ktext-emu run --json` reports" in out
