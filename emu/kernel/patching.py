"""Kernel text patching on every node, mirroring arch/arm64/kernel/patching.c
with the ktext series' hook (patch 07, ``ktext_replication_patch``).

Owns the host-side patch API and its rules:

* ``patch_text_nosync(ctx, va, insn)``: one 32-bit instruction at a
  4-byte aligned address of text, written into node 0's image
  (``aarch64_insn_write``) and, through ktext.py's
  ``ktext_replication_patch``, into every node's copy, after which the
  translated code of every copy is invalidated, so no CPU on any node runs
  the old instruction once the call returns.  Text is kernel text [_stext,
  _etext), replicated; init text and module text go through the same path,
  which the hook leaves alone (``text_kind``, ``patch_phys``: patch_map()'s
  __pa_symbol or vmalloc_to_page);
* ``patch_text(ctx, sites)``: several sites under ``stop_machine``: every
  online CPU is first brought to a rendezvous outside the kernel (EL0, as a
  stopper thread would find it between two kernel entries), parked there
  while all sites are written and the translated code invalidated, then
  released; the returned ``Rendezvous`` says where each CPU was parked and
  proves that none ran while parked;
* ``PatchError`` for a misaligned address, an address that is no text
  (head text, rodata, data, unmapped modules area, user space...) or a value
  that is not a 32-bit word, naming the address, its symbol and the rule;
* ``guest_patch_text_nosync(ctx, cpu, va, insn)``: the same patch done by
  the guest's own ``aarch64_insn_patch_text_nosync`` (kernel_blob/patching.S)
  on a chosen CPU, which writes every copy through the linear map and does
  the cache maintenance of the cache model (``emu/checks/icache.py``).

Also here: ``patching_init`` (the boot-time part: lm_alias(_stext) for the
guest, and the hook that makes every guest store to text visible),
``stop_machine``/``quiesce`` (the rendezvous on its own), ``read_text`` and
``write_text_word`` (every node's copy of one word).  ``ctx`` is any
``emu.kernel.context.KernelContext``, a ``System`` for instance.

Unicorn keeps translated code by physical page.  A guest store invalidates
it on the one engine every CPU shares (``patching_init`` makes sure that
holds for every store); a host write does not, hence ``invalidate_text``
after every host write to text.  The host runs between quanta, so while it
patches every CPU is stopped somewhere; ``patch_text`` moves them out of
the kernel first so that no CPU is parked in the middle of a sequence being
rewritten.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_WRITE_PROT, Uc
from unicorn.arm64_const import UC_ARM64_REG_PC, UC_ARM64_REG_PSTATE

from emu.errors import PatchError, UsageError
from emu.hw.cpu import PowerState, VCpu
from emu.hw.machine import Machine
from emu.hw.pagetable import Access, make_ttbr, walk
from emu.kernel.context import KernelContext
from emu.kernel.image import KernelImage
from emu.kernel.insn import MASK64, decode_insn
from emu.kernel.ktext import ktext_replication_patch, node_text_pas, swapper_pg_dir_node_phys
from emu.kernel.layout import KernelLayout

LM_STEXT = "ktext_lm_stext"
GUEST_PATCH_FUNCTION = "aarch64_insn_patch_text_nosync"
DEFAULT_DRAIN_LIMIT = 2_000_000  # instructions stop_machine may run to empty the kernel
DRAIN_STEP = 2_000
LOWER_HALF_END = (1 << 48) - 1  # user space (TTBR0) for every VA size the machine has
EINVAL = 22


# ------------------------------------------------------------------ boot


def patching_init(
    machine: Machine, image: KernelImage, layout: KernelLayout, text_copies: Sequence[int | None]
) -> None:
    """Boot-time set-up of text patching.

    Gives the guest's patch routine lm_alias(_stext), node 0's text through
    the linear map (PHYS_OFFSET is the start of node 0's bank), and makes
    every guest store to any copy of kernel text invalidate translated code.

    The second needs a Unicorn detail: a store invalidates the translated
    code of its physical page only while the storing alias's TLB entry is
    marked "not dirty", and Unicorn clears that mark after the first store
    through an alias that is not itself executable (the linear map), until
    that entry is refilled.  A later store through the same entry, say the
    second of two patches in one quantum, would leave stale code running.
    Unicorn never clears the mark on a page a memory hook covers, so a
    write-protection hook (it never fires: RAM is mapped writable) over the
    physical text of every node keeps every store visible.
    """
    physmem = machine.physmem
    if image.has(LM_STEXT):
        stext_pa = image.pa_of(image.sym("_stext"))
        lm_stext = layout.linear_va(stext_pa, physmem.banks[0].base)
        physmem.write_u64(image.pa_of(image.sym(LM_STEXT)), lm_stext)
    size = image.sym("_etext") - image.sym("_stext")
    starts = [image.pa_of(image.sym("_stext"))]
    starts += [copy for copy in text_copies[1:] if copy is not None]
    for start in starts:
        machine.uc.hook_add(UC_HOOK_MEM_WRITE_PROT, _never_called, None, start, start + size - 1)


def _never_called(*_args: object) -> bool:
    return False  # a write to RAM mapped UC_PROT_ALL is never a protection fault


def invalidate_text(machine: Machine) -> None:
    """Drop the translated code of every engine of the machine (one, today).

    A host write to guest text is invisible to code Unicorn has already
    translated; this makes every CPU fetch the text again.  The flush is
    by engine, so it covers every node's copy at once.
    """
    engines = getattr(machine, "engines", None) or [machine.uc]
    for uc in engines:
        uc.ctl_flush_tb()


# -------------------------------------------------------------------- rules


def describe_address(ctx: KernelContext, va: int) -> str:
    """What part of the address space ``va`` is in, for messages."""
    image = ctx.image
    layout = ctx.kernel.layout
    sym = image.sym
    if va < 1 << 63:
        return "user space (TTBR0)"
    ranges = [
        ("head text (not replicated)", sym("_text"), sym("_stext")),
        ("kernel text", sym("_stext"), sym("_etext")),
        ("rodata", sym("__start_rodata"), sym("__end_rodata")),
        ("init text/data", sym("__inittext_begin"), sym("_data")),
        ("kernel data/bss", sym("_data"), sym("_end")),
        ("the modules area", layout.modules_vaddr, layout.modules_end),
        ("the linear map", layout.page_offset, layout.page_end),
        ("vmalloc space", layout.vmalloc_start, layout.vmalloc_end),
    ]
    for name, lo, hi in ranges:
        if lo <= va < hi:
            return name
    return "no kernel mapping"


def check_patch(ctx: KernelContext, va: object, insn: object, what: str = "patch_text") -> None:
    """The rules of aarch64_insn_patch_text_nosync(): PatchError naming the broken one."""
    image = ctx.image
    if isinstance(va, bool) or not isinstance(va, int) or not 0 <= va <= MASK64:
        raise PatchError(f"{what}: address {va!r} is not a 64-bit virtual address")
    symbol = ctx.kernel.symbolize(va)
    where = f"{va:#x} <{symbol}>"
    if isinstance(insn, bool) or not isinstance(insn, int) or not 0 <= insn < 1 << 32:
        raise PatchError(
            f"{what}: instruction {insn!r} for {where} is not a 32-bit value "
            "(A64 instructions are one 32-bit word)"
        )
    if va & 3:
        raise PatchError(
            f"{what}: {where} is not 4-byte aligned (instructions are patched as aligned "
            "32-bit words)"
        )
    if text_kind(ctx, va) is None:
        stext, etext = image.sym("_stext"), image.sym("_etext")
        raise PatchError(
            f"{what}: {where} is in {describe_address(ctx, va)}, outside kernel text "
            f"[_stext {stext:#x}, _etext {etext:#x}), init text and executable module "
            "text: only text is patched (and only kernel text replicated)"
        )


KERNEL_TEXT = "kernel text"
INIT_TEXT = "init text"
MODULE_TEXT = "module text"


def _init_text(image: KernelImage) -> tuple[int, int]:
    end = "__inittext_end" if image.has("__inittext_end") else "_einittext"
    return image.sym("__inittext_begin"), image.sym(end)


def text_kind(ctx: KernelContext, va: int) -> str | None:
    """Which text ``va`` is in, as patch_map() tells them apart, or None.

    Kernel text [_stext, _etext) and init text (core_kernel_text(): both
    is_image_text(), reached through __pa_symbol; only the first is
    replicated), or module text: an address of the modules area or vmalloc
    space that init_mm (node 0's root) maps executable at EL1, reached
    through vmalloc_to_page().  The head text is no vm area and unmapped."""
    image = ctx.image
    if image.sym("_stext") <= va < image.sym("_etext"):
        return KERNEL_TEXT
    start, end = _init_text(image)
    if start <= va < end:
        return INIT_TEXT
    layout = ctx.kernel.layout
    in_area = (layout.modules_vaddr <= va < layout.modules_end
               or layout.vmalloc_start <= va < layout.vmalloc_end)  # fmt: skip
    if in_area and not image.sym("_text") <= va < image.sym("_end"):
        found = _walk_init_mm(ctx, va)
        if found.pa is not None and found.fault is None:
            return MODULE_TEXT
    return None


def _walk_init_mm(ctx: KernelContext, va: int):
    kernel = ctx.kernel
    root = swapper_pg_dir_node_phys(kernel.replication, 0)
    return walk(ctx.physmem.read_u64, kernel.tcr, 0, make_ttbr(root), va, Access.FETCH, 1)


def patch_phys(ctx: KernelContext, va: int) -> int:
    """The physical address patch_map() maps for ``va``: __pa_symbol() for
    image text, vmalloc_to_page() (a walk of init_mm) for module text."""
    if text_kind(ctx, va) == MODULE_TEXT:
        return _walk_init_mm(ctx, va).pa
    return ctx.image.pa_of(va)


# ---------------------------------------------------------------- host API


@dataclass(frozen=True)
class PatchedWord:
    """One instruction a patch replaced, and where each node holds it."""

    va: int
    symbol: str
    old: int
    new: int
    pas: tuple[tuple[int, int], ...]  # (node, PA), node 0's image first

    def describe(self) -> str:
        return (
            f"{self.va:#x} <{self.symbol}>: {decode_insn(self.old, self.va)} -> "
            f"{decode_insn(self.new, self.va)} on {len(self.pas)} cop"
            f"{'y' if len(self.pas) == 1 else 'ies'}"
        )


def aarch64_insn_write(ctx: KernelContext, va: int, insn: int) -> tuple[int, int]:
    """Write ``insn`` at ``va`` in node 0's image (or the module's page), the
    physical page Linux's patch_map() reaches through the fixmap; (PA, the
    word it replaced)."""
    pa = patch_phys(ctx, va)
    old = ctx.physmem.read_u32(pa)
    ctx.physmem.write_u32(pa, insn)
    return pa, old


def write_text_word(ctx: KernelContext, va: int, insn: int) -> PatchedWord:
    """Write ``insn`` at ``va`` in node 0's image and every copy, unchecked and
    without invalidating translated code (the caller does both)."""
    pa, old = aarch64_insn_write(ctx, va, insn)
    copies = ktext_replication_patch(ctx.kernel.replication, ctx.physmem, ctx.image, va, insn)
    return PatchedWord(va, ctx.kernel.symbolize(va), old, insn, ((0, pa), *copies))


def patch_text_nosync(ctx: KernelContext, va: int, insn: int) -> PatchedWord:
    """aarch64_insn_patch_text_nosync() from the host: every copy, then invalidation.

    Safe while other CPUs may be running the site only for instructions the
    architecture lets change under a running CPU (NOP, B, BL, BRK, SVC,
    HVC, SMC); use ``patch_text`` for anything else.
    """
    check_patch(ctx, va, insn, "patch_text_nosync")
    patched = write_text_word(ctx, va, insn)
    invalidate_text(ctx.machine)
    return patched


@dataclass(frozen=True)
class ParkedCpu:
    """Where one CPU waited while the machine was stopped."""

    cpu: int
    node: int
    pc: int
    el: int
    symbol: str
    instructions: int  # the CPU's retired instructions when it was parked


@dataclass
class Rendezvous:
    """stop_machine(): every online CPU parked outside the kernel, then released."""

    parked: list[ParkedCpu] = field(default_factory=list)
    drained: dict[int, int] = field(default_factory=dict)  # cpu -> instructions run to leave EL1
    patched: list[PatchedWord] = field(default_factory=list)
    released: bool = False

    @property
    def cpus(self) -> list[int]:
        return [p.cpu for p in self.parked]


def cpu_el(vcpu: VCpu) -> int:
    """The exception level of a CPU that is off the engine (its saved context)."""
    return (vcpu.context.reg_read(UC_ARM64_REG_PSTATE) >> 2) & 3


def _in_kernel(vcpu: VCpu) -> bool:
    return vcpu.power is PowerState.ON and (vcpu.context is None or cpu_el(vcpu) != 0)


def _drain(ctx: KernelContext, rendezvous: Rendezvous, limit: int) -> None:
    """Run every CPU that is inside the kernel, round-robin, until it is back at EL0.

    A temporary code hook over the lower (TTBR0) half stops a CPU at its
    first instruction at EL0, so it parks right where it returned to user
    space, whatever its quantum.
    """
    machine = ctx.machine
    machine.save_current()
    if not any(_in_kernel(vcpu) for vcpu in machine.cpus):
        return
    uc = machine.uc
    hook = uc.hook_add(UC_HOOK_CODE, _stop_at_el0, None, 0, LOWER_HALF_END)
    invalidate_text(machine)  # code translated before the hook would not call it
    try:
        spent = 0
        while True:
            inside = [vcpu for vcpu in machine.cpus if _in_kernel(vcpu)]
            if not inside:
                return
            if spent >= limit:
                names = ", ".join(
                    f"CPU {v.index} at {ctx.kernel.symbolize(v.context.reg_read(UC_ARM64_REG_PC))}"
                    if v.context is not None else f"CPU {v.index} (starting)"
                    for v in inside
                )  # fmt: skip
                raise PatchError(
                    f"stop_machine: {names} did not leave the kernel within {limit} instructions"
                )
            for vcpu in inside:
                machine.switch_to(vcpu)
                ran = machine.run_quantum(vcpu, max(1, min(DRAIN_STEP, limit - spent)))
                machine.save_current()
                spent += ran
                rendezvous.drained[vcpu.index] = rendezvous.drained.get(vcpu.index, 0) + ran
    finally:
        uc.hook_del(hook)


def _stop_at_el0(uc: Uc, _address: int, _size: int, _user: object) -> None:
    if not (uc.reg_read(UC_ARM64_REG_PSTATE) >> 2) & 3:
        uc.emu_stop()


def quiesce(ctx: KernelContext, limit: int = DEFAULT_DRAIN_LIMIT) -> dict[int, int]:
    """Run every CPU that is in the kernel (or still starting) until it is at
    EL0; cpu -> instructions it ran.  PatchError if some CPU does not get
    there within ``limit`` instructions in all."""
    rendezvous = Rendezvous()
    _drain(ctx, rendezvous, limit)
    return rendezvous.drained


@contextmanager
def stop_machine(ctx: KernelContext, drain_limit: int = DEFAULT_DRAIN_LIMIT) -> Iterator[Rendezvous]:
    """Park every online CPU at EL0 for the body of the ``with``; check on
    release that none of them ran.  CPUs still in the kernel are run until
    they return to user space first (a stopper thread runs only between
    kernel entries of the task it preempts)."""
    machine = ctx.machine
    rendezvous = Rendezvous()
    _drain(ctx, rendezvous, drain_limit)
    for vcpu in machine.cpus:
        if vcpu.power is not PowerState.ON or vcpu.context is None:
            continue
        pc = vcpu.context.reg_read(UC_ARM64_REG_PC)
        rendezvous.parked.append(ParkedCpu(
            vcpu.index, vcpu.node, pc, cpu_el(vcpu), ctx.kernel.symbolize(pc),
            machine.accounting.instructions(vcpu.index),
        ))  # fmt: skip
    yield rendezvous
    machine.save_current()
    for parked in rendezvous.parked:
        now = machine.accounting.instructions(parked.cpu)
        if now != parked.instructions:
            raise PatchError(
                f"stop_machine: CPU {parked.cpu} ran {now - parked.instructions} instructions "
                "while it was parked"
            )
    rendezvous.released = True


def patch_text(
    ctx: KernelContext, sites: Sequence[tuple[int, int]], drain_limit: int = DEFAULT_DRAIN_LIMIT
) -> Rendezvous:
    """aarch64_insn_patch_text(): several (va, insn) sites under stop_machine.

    Every site is checked before anything is written; then every online CPU
    is parked (``Rendezvous``), all sites are written on every node, the
    translated code is invalidated once, and the CPUs are released.
    """
    sites = list(sites)
    if not sites:
        raise PatchError("patch_text: no sites to patch")
    for entry in sites:
        if not isinstance(entry, tuple) or len(entry) != 2:
            raise PatchError(f"patch_text: site {entry!r} is not a (va, insn) pair")
        check_patch(ctx, entry[0], entry[1], "patch_text")
    vas = [va for va, _insn in sites]
    if len(set(vas)) != len(vas):
        twice = sorted({va for va in vas if vas.count(va) > 1})
        raise PatchError(
            "patch_text: " + ", ".join(f"{va:#x} <{ctx.kernel.symbolize(va)}>" for va in twice)
            + " given more than once"
        )
    with stop_machine(ctx, drain_limit) as rendezvous:
        for va, insn in sites:
            rendezvous.patched.append(write_text_word(ctx, va, insn))
        invalidate_text(ctx.machine)
    return rendezvous


def read_text(ctx: KernelContext, va: int) -> list[tuple[int, int]]:
    """(node, word) of the instruction at ``va`` in node 0's image and every
    copy (node 0 only, for text that is not replicated)."""
    if text_kind(ctx, va) == MODULE_TEXT:
        return [(0, ctx.physmem.read_u32(patch_phys(ctx, va)))]
    pas = node_text_pas(ctx.image, ctx.kernel.replication.text_copies, va)
    return [(node, ctx.physmem.read_u32(pa)) for node, pa in pas]


# --------------------------------------------------------------- guest API


def guest_patch_text_nosync(ctx: KernelContext, cpu: int, va: int, insn: int) -> int:
    """Run the guest's aarch64_insn_patch_text_nosync(va, insn) on ``cpu``.

    Returns its result: 0, or -EINVAL (the guest applies the same rules as
    ``check_patch``, but answers instead of raising).  The CPU must be up.
    """
    if not ctx.image.has(GUEST_PATCH_FUNCTION):
        raise UsageError(f"{ctx.image.path} has no {GUEST_PATCH_FUNCTION}")
    result = ctx.call(cpu, GUEST_PATCH_FUNCTION, va & MASK64, insn & 0xFFFF_FFFF)["x0"]
    return result - (1 << 64) if result >> 63 else result
