"""The one exception hierarchy of ktext-emu and the exit status of each class.

Every failure a user can cause (bad input, a faulting guest, an illegal
patch) is an ``EmuError``; the CLI prints ``ktext-emu: error: <message>`` and
exits with the class's ``exit_status``. Anything else is a bug in ktext-emu.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceLoc:
    """A place in a user's text file, for messages of the form FILE:LINE."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class EmuError(Exception):
    """Root of every error ktext-emu reports to a user."""

    exit_status = 1


class UsageError(EmuError):
    """A command line that does not make sense."""

    exit_status = 2


class ConfigError(EmuError):
    """A machine description, preset, layout or option that cannot be built."""

    exit_status = 3


class BlobError(EmuError):
    """A kernel blob that cannot be assembled, linked or loaded."""

    exit_status = 4


class AsmError(BlobError):
    """Assembly source the front end rejects; the message starts with FILE:LINE."""

    def __init__(self, message: str, loc: SourceLoc | None = None) -> None:
        self.loc = loc
        super().__init__(f"{loc}: {message}" if loc else message)


class LinkError(BlobError):
    """Undefined or duplicate symbols, overlaps, failed ASSERTs, out-of-range fixups."""


class ElfError(BlobError):
    """An ELF image that is malformed or does not fit the machine."""


class GuestFault(EmuError):
    """The guest did something the machine cannot continue from.

    ``report`` is the machine's FaultReport (CPU, node, PC, symbol, ESR, FAR).
    """

    exit_status = 5

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class LimitReached(GuestFault):
    """A run limit (``--max-instructions``) stopped the guest before its tasks
    finished: nothing was measured that can be trusted as the workload's."""

    exit_status = 8


class PatchError(EmuError):
    """A text patch that breaks a rule of kernel/patching.c."""

    exit_status = 6


class OutputError(EmuError):
    """A report, image or plot that cannot be written."""

    exit_status = 7


EXIT_STATUS_DOC = {
    "a check failed": 1,  # verify, storm, scenarios: the run worked, a finding did not hold
    "usage": UsageError.exit_status,
    "config": ConfigError.exit_status,
    "build": BlobError.exit_status,
    "guest fault": GuestFault.exit_status,
    "patch": PatchError.exit_status,
    "I/O": OutputError.exit_status,
    # run: the limit stopped tasks that had work left (LimitReached); storm: it
    # stopped the guest in the middle of a key update, so the copies could not
    # be compared. Either way the run was cut short, not judged.
    "cut short by the instruction limit": LimitReached.exit_status,
    "internal error": 70,  # EX_SOFTWARE: anything not an EmuError is a bug
    "interrupted": 130,  # Ctrl-C (SIGINT): what was measured is kept, marked incomplete
    "terminated": 143,  # SIGTERM, handled as Ctrl-C is
}
