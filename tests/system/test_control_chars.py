"""Control characters in paths, names or ``--cmdline`` never reach the
terminal raw (issue 17, low): every error line and the printed report show
them escaped, so a newline cannot forge a line and an escape sequence cannot
recolour or move the cursor."""

from __future__ import annotations

import pytest

from emu.cli import main
from emu.report import format_report

NASTY = "a\x1b[31mred\nktext-emu: FORGED\rx\x07"


def _clean(text: str) -> None:
    for line in text.splitlines():
        assert line.isprintable(), repr(line)
    assert "FORGED" not in text or "\\nktext-emu: FORGED" in text


@pytest.mark.parametrize("argv", [
    ["run", "--machine", f"/nonexistent/{NASTY}.toml"],
    ["run", "--workload", NASTY],
    ["run", "--kernel", f"/nonexistent/{NASTY}"],
    ["symbols", f"/nonexistent/{NASTY}"],
    ["compare", f"/nonexistent/{NASTY}", "x"],
    ["build", "-o", f"/nonexistent/{NASTY}/k.elf"],
    ["run", "--json", f"/nonexistent/{NASTY}/r.json"],
])  # fmt: skip
def test_an_error_line_escapes_control_characters(argv, capsys):
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1, repr(err)
    _clean(err)
    assert "\\x1b" in err or "\\n" in err


def test_a_malformed_ktext_value_warns_with_control_characters_escaped(capsys):
    # A malformed ktext= is Linux's "Malformed early option" warning, not an error
    # (issue 14 item 8): the run goes on, and nothing it prints is raw.
    argv = ["run", "--cmdline", f"ktext={NASTY}", "--nodes", "1", "--cpus-per-node", "1",
            "--workload", "syscall", "--iterations", "2"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    _clean(out)
    _clean(err)
    assert "Malformed early option 'ktext'" in out + err


def test_the_printed_report_escapes_names():
    run = {"machine": {"name": NASTY, "nodes": 1, "cpus_per_node": 1, "granule": 4096,
                       "va_bits": 48, "levels": 4},
           "workload": NASTY, "ktext": False, "ktext_requested": False,
           "ktext_message": NASTY, "instructions": 1, "stop_reason": "done",
           "cpus": [{"node": 0, "kernel_fetches_by_node": [1]}],
           "checks": {"copies_identical": True, "roots_differ_only_in_kernel_slots": True,
                      "ttbr1_matches_node": True}}
    text = format_report({"runs": [run]})
    _clean(text)
    assert "\\x1b[31m" in text
