"""Where in a TOML file something is wrong: the ``FILE:LINE: ...`` locator that
machine files (emu/config.py) and sweep grids (emu/sweep.py) share, for a
file tomllib refuses and for a table or key the schema refuses.
"""

from __future__ import annotations

import re

_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def toml_error(origin: str, err: Exception) -> str:
    """``origin:LINE: invalid TOML: ... (column C)`` for a tomllib.TOMLDecodeError."""
    message = " ".join(str(err).split())
    match = _TOML_AT.search(message)
    if match:
        line, column = match.groups()
        return f"{origin}:{line}: invalid TOML: {message[: match.start()]} (column {column})"
    return f"{origin}: invalid TOML: {message}"


def line_of(text: str, table: str | None, key: str | None) -> int | None:
    """The line that sets ``key`` in ``[table]`` (``table`` None: before any
    header), or with ``key`` None the table's header line."""
    current = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("[") and not line.startswith("[["):
            current = line.strip("[] \t").split("]")[0].strip()
            if key is None and current == table:
                return number
            continue
        name = line.split("=", 1)[0].strip().strip('"').strip("'")
        if key is not None and current == table and "=" in line and name == key:
            return number
    return None


def located(origin: str, text: str, table: str | None, key: str | None, message: str) -> str:
    """``origin:LINE: message`` when the offending line can be found, else ``origin: message``."""
    line = line_of(text, table, key)
    return f"{origin}:{line}: {message}" if line else f"{origin}: {message}"
