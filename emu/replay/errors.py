"""The error a bad trace or System.map raises: one line naming file and line."""

from __future__ import annotations

from emu.errors import ConfigError


class TraceError(ConfigError):
    """A trace, System.map or kernel image that cannot be replayed.

    Exit status is the configuration/input status (3); the message starts
    with ``FILE:LINE:`` when a line is to blame.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
