"""A per-instruction trace of a window of a run: which CPU ran which
instruction, from which node's memory it was fetched (the node the fetch
accounting charged, emu/hw/accounting.py), the symbolized address and the
disassembly (capstone).

The Tracer is a ``Debugger`` (emu/hw/machine.py) that adds one Unicorn code
hook, bounded to the traced address range, only for the window; it ends the
run once ``count`` instructions were traced.  Without a Tracer no hook is
installed at all, so a run that is not traced costs nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs
from unicorn import UC_HOOK_CODE, Uc

from emu.hw.cpu import VCpu
from emu.kernel.context import KernelContext


@dataclass(frozen=True)
class TraceWindow:
    """Which instructions to trace: by CPU (empty: all), by address range
    [start, end) (None: anywhere), at most ``count`` of them."""

    cpus: frozenset[int] = frozenset()
    start: int | None = None
    end: int | None = None
    count: int = 200


@dataclass(frozen=True)
class TraceLine:
    seq: int
    cpu: int
    node: int | None  # the node the fetch came from (None: no fill described the page)
    va: int
    pa: int | None
    remote_fill: bool  # through a TLB entry a CPU of another node filled (CnP)
    symbol: str
    word: int | None
    insn: str

    def text(self) -> str:
        node = "n?" if self.node is None else f"n{self.node}"
        return (f"{self.seq:>7} cpu{self.cpu} {node}{'*' if self.remote_fill else ' '} "
                f"{self.va:#018x} <{self.symbol}>  {self.insn}")

    def to_json(self) -> dict:
        return {"seq": self.seq, "cpu": self.cpu, "node": self.node, "va": f"{self.va:#x}",
                "pa": None if self.pa is None else f"{self.pa:#x}",
                "remote_fill": self.remote_fill, "symbol": self.symbol,
                "word": None if self.word is None else f"{self.word:#010x}", "insn": self.insn}


class Tracer:
    """Traces ``window`` of ``ctx``'s run, handing each line to ``emit``."""

    def __init__(self, ctx: KernelContext, window: TraceWindow,
                 emit: Callable[[TraceLine], None]) -> None:  # fmt: skip
        self.ctx = ctx
        self.machine = ctx.machine
        self.window = window
        self.emit = emit
        self.traced = 0
        self._hook: int | None = None
        self._disasm = Cs(CS_ARCH_ARM64, CS_MODE_ARM)
        self._decoded: dict[tuple[int, int], str] = {}

    @property
    def done(self) -> bool:
        return self.traced >= self.window.count

    def attach(self) -> None:
        """Install the hook and become the machine's debugger."""
        window = self.window
        begin, end = (1, 0) if window.start is None else (window.start, (window.end or 0) - 1)
        self._hook = self.machine.uc.hook_add(UC_HOOK_CODE, self._on_insn, None, begin, end)
        self.machine.uc.ctl_flush_tb()  # code translated before carries no hook
        self.machine.debugger = self

    def detach(self) -> None:
        if self._hook is not None:
            self.machine.uc.hook_del(self._hook)
            self._hook = None
            self.machine.uc.ctl_flush_tb()
        if self.machine.debugger is self:
            self.machine.debugger = None

    # Debugger protocol: end the run once the window is full.
    def before_quantum(self, cpu: VCpu, budget: int) -> int:
        return 0 if self.done else budget

    def after_quantum(self, cpu: VCpu) -> None:
        pass

    def _insn(self, word: int, va: int) -> str:
        key = (word, va)
        text = self._decoded.get(key)
        if text is None:
            text = next((f"{i.mnemonic} {i.op_str}".strip()
                         for i in self._disasm.disasm(word.to_bytes(4, "little"), va, 1)),
                        f".inst {word:#010x}")  # fmt: skip
            if len(self._decoded) < 65536:
                self._decoded[key] = text
        return text

    def _on_insn(self, uc: Uc, address: int, _size: int, _user: object) -> None:
        if self.done:
            return
        cpu = self.machine.current
        if cpu is None or (self.window.cpus and cpu.index not in self.window.cpus):
            return
        page = self.machine.accounting.fetch_page(address)
        node, pa, remote = page if page is not None else (None, None, False)
        word = self.machine.physmem.read_u32(pa) if pa is not None else None
        self.emit(TraceLine(self.traced, cpu.index, node, address, pa, remote,
                            self.ctx.kernel.symbolize(address), word,
                            "?" if word is None else self._insn(word, address)))
        self.traced += 1
        if self.done:
            uc.emu_stop()
