"""The kernel command line as Linux parses it: splitting into ``param=value``
(lib/cmdline.c next_arg(), kernel/params.c parse_args(), called for early
params from init/main.c parse_early_param()), the boolean rule of
kstrtobool() (lib/kstrtox.c), and the series' ``ktext=`` early_param with
the warning do_early_param() prints for a value it rejects.
"""

from __future__ import annotations

from dataclasses import dataclass

from emu.errors import ConfigError

# The kernel's isspace() (lib/ctype.c): the C spaces plus Latin-1 NBSP, 0xA0.
# The command line is bytes to the kernel, so it is walked as UTF-8 bytes,
# each held in a one-character latin-1 string.
_C_SPACE = " \t\n\v\f\r\xa0"


def cmdline_params(cmdline: str) -> list[tuple[str, str | None]]:
    """Every ``param[=value]`` of a kernel command line, in order.

    Splits exactly as the kernel's parse_args()/next_arg() (lib/cmdline.c,
    kernel/params.c): whitespace separates, double quotes group (``a="b c"``
    or ``"a=b c"``) and are stripped, a bare ``--`` ends the kernel's part.
    """
    raw = cmdline.split("\0", 1)[0].encode("utf-8", "surrogateescape").decode("latin-1")
    buf = [*raw, "\0"]
    pos = _skip_spaces(buf, 0)
    params: list[tuple[str, str | None]] = []
    while buf[pos] != "\0":
        param, value, pos = _next_arg(buf, pos)
        if value is None and param == "--":
            break
        params.append((param, value))
    return params


def parse_cmdline(cmdline: str) -> dict[str, str | None]:
    """The command line as a dict; a repeated parameter keeps its last value.

    A parameter without ``=`` maps to None. Names are kept as written (the
    kernel also treats '-' and '_' as equal when matching a name).
    """
    return dict(cmdline_params(cmdline))


_TRUE_FIRST = frozenset("YyTt1")
_FALSE_FIRST = frozenset("NnFf0")


def kstrtobool(text: str | None, *, enable_disable: bool = False) -> bool:
    """The kernel's kstrtobool() (lib/kstrtox.c), raising ConfigError for -EINVAL.

    Only the first character counts: one of 'YyTt1' is true, 'NnFf0' false;
    'o'/'O' needs a second character, 'n'/'N' (on) or 'f'/'F' (off). So
    "yes", "Yellow" and "1abc" are true. This is the rule of the kernels the
    ktext series targets (v6.5-v6.7: t/f arrived in v6.0). ``enable_disable``
    adds the later upstream 'Ee' (true) and 'Dd' (false) from commit
    ae5b3500856f ("kstrtox: add support for enabled and disabled in
    kstrtobool()"), merged for v6.16.
    """
    if text is None:
        raise ConfigError("kstrtobool: no value given")
    first = text[:1]
    second = text[1:2]
    if first in _TRUE_FIRST or (enable_disable and first in ("e", "E")):
        return True
    if first in _FALSE_FIRST or (enable_disable and first in ("d", "D")):
        return False
    if first in ("o", "O"):
        if second in ("n", "N"):
            return True
        if second in ("f", "F"):
            return False
    raise ConfigError(f"kstrtobool: {text!r} is not a boolean (use 1/0, y/n, on/off)")


@dataclass(frozen=True)
class EarlyParam:
    """What an early_param decided, and the warnings parsing it printed."""

    enabled: bool
    warnings: tuple[str, ...] = ()


def malformed_early_option(param: str) -> str:
    """init/main.c do_early_param()'s pr_warn when a setup function fails."""
    return f"Malformed early option '{param}'"


def ktext_early_param(cmdline: str) -> EarlyParam:
    """The series' ``ktext=`` early_param (patch 15) over a whole command line.

    Its setup function is ``kstrtobool(str, &ktext_enabled)``: every
    occurrence is parsed in order; a value kstrtobool() rejects (or a bare
    ``ktext``, val NULL) returns -EINVAL without touching the flag, so
    do_early_param() warns "Malformed early option 'ktext'" and the previous
    value stands (the default, off, if none came before).  Boot goes on.
    """
    enabled = False
    warnings = []
    for param, value in cmdline_params(cmdline):
        if param != "ktext":
            continue
        try:
            enabled = kstrtobool(value)
        except ConfigError:
            warnings.append(malformed_early_option(param))
    return EarlyParam(enabled, tuple(warnings))


def ktext_enabled(cmdline: str) -> bool:
    """Whether ``ktext=`` turns replication on: default off, the last valid value wins."""
    return ktext_early_param(cmdline).enabled


def _skip_spaces(buf: list[str], pos: int) -> int:
    while buf[pos] != "\0" and buf[pos] in _C_SPACE:
        pos += 1
    return pos


def _next_arg(buf: list[str], pos: int) -> tuple[str, str | None, int]:
    # Walks a NUL-terminated character buffer the way lib/cmdline.c's
    # next_arg() does, including where it writes terminators, so quoting
    # corner cases come out as the kernel sees them.
    in_quote = quoted = False
    if buf[pos] == '"':
        pos += 1
        in_quote = quoted = True
    i = equals = 0
    while buf[pos + i] != "\0":
        c = buf[pos + i]
        if c in _C_SPACE and not in_quote:
            break
        if equals == 0 and c == "=":
            equals = i
        if c == '"':
            in_quote = not in_quote
        i += 1
    value_at: int | None = None
    if equals:
        buf[pos + equals] = "\0"
        value_at = pos + equals + 1
        if buf[value_at] == '"':
            value_at += 1
            if buf[pos + i - 1] == '"':
                buf[pos + i - 1] = "\0"
    if quoted and i > 0 and buf[pos + i - 1] == '"':
        buf[pos + i - 1] = "\0"
    if buf[pos + i] != "\0":
        buf[pos + i] = "\0"
        following = pos + i + 1
    else:
        following = pos + i
    param = _c_string(buf, pos)
    value = None if value_at is None else _c_string(buf, value_at)
    return param, value, _skip_spaces(buf, following)


def _c_string(buf: list[str], pos: int) -> str:
    end = buf.index("\0", pos)
    return "".join(buf[pos:end]).encode("latin-1").decode("utf-8", "surrogateescape")
