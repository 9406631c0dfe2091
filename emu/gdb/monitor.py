"""``monitor`` commands (qRcmd): what only ktext-emu can tell a kernel
engineer.  Each command takes the session's Target and selected CPU and
returns the text GDB prints.

  node              the CPU's node and the node of the copy its pc is fetched from
  copies SYMBOL|VA  the word at that address in every node's copy
  walk VA           the CPU's translation of VA, level by level (TLB noted)
  tlb               the CPU's TLB entries
  ktext             the replication state: roots and text copies per node
  text-writes all|node N   where later memory writes to kernel text go
"""

from __future__ import annotations

from collections.abc import Callable

from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs

from emu.gdb.target import Target, TargetError
from emu.hw.cpu import VCpu
from emu.hw.physmem import PhysAddrError
from emu.kernel.ktext import node_text_pas
from emu.kernel.patching import describe_address

_DISASM = Cs(CS_ARCH_ARM64, CS_MODE_ARM)


def disassemble(word: int, va: int) -> str:
    for insn in _DISASM.disasm(word.to_bytes(4, "little"), va, 1):
        return f"{insn.mnemonic} {insn.op_str}".strip()
    return f".inst {word:#010x}"


def copy_name(target: Target, node: int) -> str:
    copies = target.ctx.kernel.replication.text_copies
    return "node 0's image" if node == 0 or copies[node] is None else f"node {node}'s copy"


def resolve_address(target: Target, text: str) -> int:
    """A symbol (optionally ``+offset``) or a number."""
    text = text.strip()
    if not text:
        raise TargetError("an address or a symbol is needed")
    name, _, offset = text.partition("+")
    try:
        extra = int(offset, 0) if offset else 0
    except ValueError:
        raise TargetError(f"bad offset {offset!r}") from None
    if target.ctx.image.has(name):
        return target.ctx.image.sym(name) + extra
    try:
        return int(name, 0) + extra
    except ValueError:
        raise TargetError(f"no symbol {name!r} in the kernel") from None


def cmd_node(target: Target, vcpu: VCpu, _arg: str) -> str:
    lines = [f"CPU {vcpu.index}: node {vcpu.node} ({vcpu.power.value})"]
    pc = target.pc(vcpu)
    if pc is None:
        return lines[0] + ", not brought up yet\n"
    ctx = target.ctx
    translation = target.translate(vcpu, pc)
    where = f"pc {pc:#x} <{ctx.kernel.symbolize(pc)}>"
    if translation.pa is None:
        lines.append(f"{where}: not mapped")
    else:
        pa = translation.pa
        try:
            node = target.machine.physmem.node_of(pa)
        except PhysAddrError:
            node = None
        copy = target.text_va_of(pa)
        fetched = (f"from {copy_name(target, copy[0])}" if copy is not None
                   else describe_address(ctx, pc))  # fmt: skip
        via = "its TLB" if translation.from_tlb else "a table walk"
        lines.append(f"{where}: PA {pa:#x} on node {node}, {fetched} (via {via})")
        if copy is not None:
            lines.append("local copy" if copy[0] == vcpu.node or (
                copy[0] == 0 and ctx.kernel.replication.text_copies[vcpu.node] is None)
                else f"REMOTE: CPU on node {vcpu.node} runs node {copy[0]}'s text")
    return "\n".join(lines) + "\n"


def cmd_copies(target: Target, vcpu: VCpu, arg: str) -> str:
    ctx = target.ctx
    va = resolve_address(target, arg)
    pas = node_text_pas(ctx.image, ctx.kernel.replication.text_copies, va)
    lines = [f"{va:#x} <{ctx.kernel.symbolize(va)}> ({describe_address(ctx, va)}), "
             f"{len(pas)} cop{'y' if len(pas) == 1 else 'ies'}:"]
    words = set()
    for node, pa in pas:
        word = ctx.physmem.read_u32(pa)
        words.add(word)
        lines.append(f"  {copy_name(target, node):16} PA {pa:#x}: {word:#010x}  "
                     f"{disassemble(word, va)}")
    if len(pas) > 1:
        lines.append("  identical" if len(words) == 1 else "  COPIES DIFFER")
    return "\n".join(lines) + "\n"


def cmd_walk(target: Target, vcpu: VCpu, arg: str) -> str:
    va = resolve_address(target, arg)
    translation = target.translate(vcpu, va)
    lines = [f"CPU {vcpu.index} (node {vcpu.node}): {va:#x} <{target.ctx.kernel.symbolize(va)}>"]
    if not translation.mmu_on:
        lines.append("  MMU off: PA = VA")
    elif translation.from_tlb:
        lines.append(f"  TLB hit: PA {translation.pa:#x} (walk below: what the tables say now)")
    result = translation.walk
    if result is None and translation.mmu_on:
        result = target.table_walk(vcpu, va)
    if result is not None:
        lines.append(f"  TTBR{result.region}, ASID {result.asid}")
        for level, table_pa, index, desc_pa, desc in result.chain:
            lines.append(f"  level {level}: table {table_pa:#x}[{index}] at {desc_pa:#x} = "
                         f"{desc:#018x}")
        if result.pa is not None:
            node = (target.machine.physmem.node_of(result.pa)
                    if target.machine.physmem.is_ram(result.pa) else None)  # fmt: skip
            lines.append(f"  -> PA {result.pa:#x} (node {node}), level {result.level} leaf "
                         f"of {result.size:#x} bytes, {result.attrs}")
        if result.fault is not None:
            lines.append(f"  fault: {result.fault}")
    return "\n".join(lines) + "\n"


def cmd_tlb(target: Target, vcpu: VCpu, _arg: str) -> str:
    items = vcpu.tlb.items()
    lines = [f"CPU {vcpu.index} (node {vcpu.node}): {len(items)} private entries"]
    for (regime, asid, page), entry in sorted(items, key=lambda item: item[0][2]):
        asid_text = "global" if asid < 0 or asid > 0xFFFF else f"asid {asid}"
        lines.append(f"  {page:#018x} -> {entry.pa:#x} node {entry.node} level {entry.level} "
                     f"size {entry.size:#x} {asid_text} regime {regime} "
                     f"filled by CPU {entry.filled_by}")
    shared = target.machine.tlbs.shared_tlb(vcpu.index).items()
    if shared:
        lines.append(f"  + {len(shared)} shared (CnP) entries in its domain")
    return "\n".join(lines) + "\n"


def cmd_ktext(target: Target, _vcpu: VCpu, _arg: str) -> str:
    ctx = target.ctx
    repl = ctx.kernel.replication
    state = "on" if repl.enabled else f"off ({repl.message or 'not requested'})"
    lines = [f"kernel text replication: {state}; text {repl.copy_size:#x} bytes"]
    for node, pgd in enumerate(repl.pgd_phys):
        cpus = [vcpu.index for vcpu in target.machine.cpus if vcpu.node == node]
        lines.append(f"  node {node}: pgd {pgd:#x}, text at PA "
                     f"{repl.node_text_pa(node, ctx.image):#x} ({copy_name(target, node)}), "
                     f"CPUs {cpus}")
    mode = ("every copy" if target.text_write_node is None
            else f"node {target.text_write_node}'s copy only")
    lines.append(f"  debugger writes to kernel text go to: {mode}")
    return "\n".join(lines) + "\n"


def cmd_text_writes(target: Target, _vcpu: VCpu, arg: str) -> str:
    words = arg.split()
    nodes = len(target.ctx.kernel.replication.pgd_phys)
    if words == ["all"]:
        target.text_write_node = None
        return "writes to kernel text now go to every node's copy\n"
    if len(words) == 2 and words[0] == "node" and words[1].isdigit() and int(words[1]) < nodes:
        target.text_write_node = int(words[1])
        return (f"writes to kernel text now go to node {words[1]}'s copy ONLY: the copies "
                "will differ (verify reports it) until you write them all\n")
    raise TargetError(f"usage: monitor text-writes all | node N (N < {nodes})")


COMMANDS: dict[str, Callable[[Target, VCpu, str], str]] = {
    "node": cmd_node,
    "copies": cmd_copies,
    "walk": cmd_walk,
    "tlb": cmd_tlb,
    "ktext": cmd_ktext,
    "text-writes": cmd_text_writes,
}


def run_monitor(target: Target, vcpu: VCpu, line: str) -> str:
    name, _, arg = line.strip().partition(" ")
    if name in ("", "help"):
        return (__doc__ or "").split("\n\n", 1)[1]
    command = COMMANDS.get(name)
    if command is None:
        return f"unknown monitor command {name!r}; 'monitor help' lists them\n"
    try:
        return command(target, vcpu, arg)
    except (TargetError, PhysAddrError) as err:
        return f"monitor {name}: {err}\n"
