"""Kernel command-line splitting (next_arg/parse_args), kstrtobool and ktext=."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.errors import ConfigError
from emu.kernel.cmdline import (
    cmdline_params,
    kstrtobool,
    ktext_early_param,
    ktext_enabled,
    parse_cmdline,
)

SPLITS = [
    ("", []),
    ("   \t\n", []),
    ("quiet", [("quiet", None)]),
    ("a=1 b=2", [("a", "1"), ("b", "2")]),
    ("  a=1\tb=2\nc  ", [("a", "1"), ("b", "2"), ("c", None)]),
    ("a= b", [("a", ""), ("b", None)]),
    ("a=b=c", [("a", "b=c")]),
    ('a="x y" b', [("a", "x y"), ("b", None)]),
    ('"a=x y" b', [("a", "x y"), ("b", None)]),
    ('"quoted param" z', [("quoted param", None), ("z", None)]),
    ('a="x"y', [("a", 'x"y')]),  # only a closing quote at the very end is stripped
    ('a="open ended', [("a", "open ended")]),
    ('a=""', [("a", "")]),
    ("=x", [("=x", None)]),  # next_arg only sees an '=' after the first character
    ("a -- b=c", [("a", None)]),  # a bare -- hands the rest to init
    ("--x a", [("--x", None), ("a", None)]),
    ("a=1\0b=2", [("a", "1")]),  # a C string ends at NUL
    ("x=caf\u00e9 y", [("x", "caf\u00e9"), ("y", None)]),
    # The kernel's isspace() includes byte 0xA0, the second byte of a UTF-8 NBSP.
    ("a\u00a0b", [("a\udcc2", None), ("b", None)]),
]


@pytest.mark.parametrize(("cmdline", "expected"), SPLITS)
def test_cmdline_splits_like_the_kernel(cmdline: str, expected: list) -> None:
    assert cmdline_params(cmdline) == expected


def test_parse_cmdline_keeps_the_last_value() -> None:
    line = "console=ttyS0 ktext=0 console=ttyAMA0,115200 ktext=1 nokaslr"
    assert parse_cmdline(line) == {"console": "ttyAMA0,115200", "ktext": "1", "nokaslr": None}
    assert [p for p, _ in cmdline_params(line)].count("ktext") == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.from_regex(r"[a-z_.-]{1,8}", fullmatch=True),
                          st.one_of(st.none(), st.from_regex(r"[a-zA-Z0-9,.=:/-]{0,8}",
                                                             fullmatch=True),
                                    st.from_regex(r"[a-z ]{0,8}", fullmatch=True))),
                max_size=8))
def test_joined_params_split_back(params) -> None:
    params = [(p, v) for p, v in params if p != "--"]
    line = " ".join(p if v is None else (f'{p}="{v}"' if " " in v else f"{p}={v}")
                    for p, v in params)
    assert cmdline_params(line) == params


TRUE = ["1", "y", "Y", "yes", "t", "T", "true", "TRUE", "on", "ON", "On", "oN", "1abc", "yellow"]
FALSE = ["0", "n", "N", "no", "f", "F", "false", "off", "OFF", "oF", "0x1", "nonsense"]
INVALID = ["", "o", "ox", "o ", "2", "x", " 1", "-1", "enable", "disable", "E", "d"]


@pytest.mark.parametrize("text", TRUE)
def test_kstrtobool_true(text: str) -> None:
    assert kstrtobool(text) is True


@pytest.mark.parametrize("text", FALSE)
def test_kstrtobool_false(text: str) -> None:
    assert kstrtobool(text) is False


@pytest.mark.parametrize("text", [*INVALID, None])
def test_kstrtobool_invalid(text: str | None) -> None:
    with pytest.raises(ConfigError):
        kstrtobool(text)


@pytest.mark.parametrize(("text", "value"),
                         [("enable", True), ("E", True), ("disable", False), ("D", False),
                          ("y", True), ("off", False)])
def test_kstrtobool_enable_disable_of_newer_kernels(text: str, value: bool) -> None:
    assert kstrtobool(text, enable_disable=True) is value


# The rule as lib/kstrtox.c documents it: "returns 0 iff the first character
# is one of 'YyTt1NnFf0', or [oO][NnFf] for "on" and "off"".
KERNEL_TRUE = re.compile(r"[YyTt1]|[oO][Nn]", re.DOTALL)
KERNEL_FALSE = re.compile(r"[NnFf0]|[oO][Ff]", re.DOTALL)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="YyTt1NnFf0oOeEdD2x -\n", max_size=4))
def test_kstrtobool_matches_the_documented_rule(text: str) -> None:
    if KERNEL_TRUE.match(text):
        assert kstrtobool(text) is True
    elif KERNEL_FALSE.match(text):
        assert kstrtobool(text) is False
    else:
        with pytest.raises(ConfigError):
            kstrtobool(text)


@pytest.mark.parametrize(
    ("cmdline", "enabled"),
    [("", False), ("quiet", False), ("ktext=1", True), ("ktext=on", True), ("ktext=0", False),
     ("ktext=1 ktext=0", False), ("ktext=0 ktext=yes", True), ("ktext=1 -- ktext=0", True),
     ("ktxt=1", False), ('ktext="1"', True)],
)
def test_ktext_default_off_and_last_wins(cmdline: str, enabled: bool) -> None:
    assert ktext_enabled(cmdline) is enabled


@pytest.mark.parametrize(
    ("cmdline", "enabled", "warnings"),
    [("ktext", False, 1), ("ktext=", False, 1), ("ktext=maybe", False, 1),
     ("ktext=bad ktext=1", True, 1), ("ktext=enable", False, 1),
     ("ktext=1 ktext=maybe", True, 1), ("ktext=on ktext ktext=x", True, 2)],
)
def test_malformed_ktext_warns_and_keeps_the_previous_value(
        cmdline: str, enabled: bool, warnings: int) -> None:
    # do_early_param(): kstrtobool() failed, so "Malformed early option" and the
    # flag keeps what it had (the default, off, or an earlier valid ktext=).
    param = ktext_early_param(cmdline)
    assert param.enabled is enabled
    assert param.warnings == ("Malformed early option 'ktext'",) * warnings
    assert ktext_enabled(cmdline) is enabled


def test_valid_ktext_prints_nothing() -> None:
    assert ktext_early_param("ktext=1 ktext=off").warnings == ()
