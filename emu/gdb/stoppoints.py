"""Breakpoints and watchpoints kept in the emulator, not in guest memory.

A breakpoint is a Unicorn code hook bounded to its one address, so it hits
whichever node's copy a CPU fetches that VA from and no copy's bytes change
(``verify`` stays clean).  A watchpoint is a memory hook bounded to the
physical range(s) its VA maps to (Unicorn's memory hooks see physical
addresses when the TLB is the project's own, UC_TLB_VIRTUAL), found through
every CPU's translation when it is set.  Stopping the engine from the
memory hook itself leaves the PC on the store, which has already been
done, so the CPU would run it twice; the hit is only noted there, and a
code hook on every instruction (present while any watchpoint is) stops the
engine before the next instruction: the access has retired, PC is past it.  Hooks exist only while stop points do: a run
with none has no hook of ours at all.  A hit records what and where, then
stops the engine; the quantum ends there (``Machine.run_quantum``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, Uc

from emu.hw.machine import Machine

# Z packet types
SOFTWARE, HARDWARE, WRITE_WATCH, READ_WATCH, ACCESS_WATCH = range(5)
WATCH_NAMES = {WRITE_WATCH: "watch", READ_WATCH: "rwatch", ACCESS_WATCH: "awatch"}
_WATCH_HOOKS = {WRITE_WATCH: UC_HOOK_MEM_WRITE, READ_WATCH: UC_HOOK_MEM_READ,
                ACCESS_WATCH: UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE}  # fmt: skip


@dataclass(frozen=True)
class Hit:
    cpu: int
    kind: int  # SOFTWARE/HARDWARE for a breakpoint, a *_WATCH for a watchpoint
    address: int  # the breakpoint's, or the watched address accessed


class StopPoints:
    """The session's breakpoints and watchpoints and their Unicorn hooks."""

    def __init__(self, machine: Machine, physical: Callable[[int], set[int]]) -> None:
        self.machine = machine
        # The PAs a VA has for any CPU (set when a watchpoint is inserted).
        self.physical = physical
        self.breakpoints: dict[int, int] = {}  # address -> hook handle
        # (kind, address, length) -> hook handles, one per physical range
        self.watchpoints: dict[tuple[int, int, int], list[int]] = {}
        self._step_hook: int | None = None
        self.hit: Hit | None = None
        self._pending: Hit | None = None  # a watchpoint hit waiting for its instruction to retire
        self.suppress_breakpoints = False  # while stepping off one

    def _flush(self) -> None:
        # Code already translated carries the hooks it was translated with.
        self.machine.uc.ctl_flush_tb()

    def insert(self, kind: int, address: int, length: int) -> bool:
        uc = self.machine.uc
        if kind in (SOFTWARE, HARDWARE):
            if address not in self.breakpoints:
                self.breakpoints[address] = uc.hook_add(UC_HOOK_CODE, self._on_break, kind,
                                                        address, address)
                self._flush()
            return True
        if kind not in _WATCH_HOOKS or length <= 0:
            return False
        key = (kind, address, length)
        if key not in self.watchpoints:
            pas = self.physical(address)
            if not pas:
                return False
            self.watchpoints[key] = [
                uc.hook_add(_WATCH_HOOKS[kind], self._on_access, (kind, address, pa),
                            pa, pa + length - 1)
                for pa in sorted(pas)
            ]
            if self._step_hook is None:
                self._step_hook = uc.hook_add(UC_HOOK_CODE, self._instruction_boundary)
            self._flush()
        return True

    def remove(self, kind: int, address: int, length: int) -> bool:
        uc = self.machine.uc
        if kind in (SOFTWARE, HARDWARE):
            handle = self.breakpoints.pop(address, None)
            handles = [] if handle is None else [handle]
        else:
            handles = self.watchpoints.pop((kind, address, length), [])
        if not handles:
            return False
        for handle in handles:
            uc.hook_del(handle)
        if not self.watchpoints and self._step_hook is not None:
            uc.hook_del(self._step_hook)
            self._step_hook = None
        self._flush()
        return True

    def clear(self) -> None:
        """Remove every hook (detach, disconnect, end of the session)."""
        for address in list(self.breakpoints):
            self.remove(SOFTWARE, address, 4)
        for kind, address, length in list(self.watchpoints):
            self.remove(kind, address, length)

    def take_hit(self) -> Hit | None:
        hit = self.hit or self._pending  # pending: the quantum ended right after the access
        self.hit = self._pending = None
        return hit

    def _cpu(self) -> int:
        current = self.machine.current
        return -1 if current is None else current.index

    def _on_break(self, uc: Uc, address: int, _size: int, kind: int) -> None:
        if self.suppress_breakpoints or self.hit is not None:
            return
        self.hit = Hit(self._cpu(), kind, address)
        uc.emu_stop()

    def _on_access(self, uc: Uc, _access: int, address: int, _size: int, _value: int,
                   key: tuple[int, int, int]) -> None:  # fmt: skip
        if self.hit is not None or self._pending is not None:
            return
        kind, va, pa = key
        self._pending = Hit(self._cpu(), kind, va + max(0, address - pa))

    def _instruction_boundary(self, uc: Uc, _address: int, _size: int, _user: object) -> None:
        if self._pending is not None:
            self.hit, self._pending = self._pending, None
            uc.emu_stop()
