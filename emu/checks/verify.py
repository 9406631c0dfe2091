"""The replication verifier: is every node's copy of the kernel still node 0's?

Owns ``verify(ctx)``, the check RMK's series lacks (its post-boot
comparison never went public): every copy of [_stext, __end_rodata) is
compared with node 0's image, and for each node that differs it reports the
first differing address, its nearest symbol, capstone's disassembly of both
words, which part of the range it is in and how many words differ.  It also
checks, per node, that the node's own root maps kernel text and replicated
rodata to that node's copy (a copy nobody fetches from proves nothing), that
every alternative site holds what the records and the capabilities make it
(``alternative.check_alternatives``), and every jump label what its key's
state makes it (``jump_label.check_jump_labels``).

Part of the copied range is deliberately not used: every node maps
[PAGE_ALIGN_DOWN(__start_ro_after_init), __end_rodata) to node 0's pages
(patch 14), so a difference there is reported with its region but cannot
change what any CPU runs.  The page directories sit after __end_rodata, as
in vmlinux.lds.S, so a top-level write is never a copy difference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from emu.hw.pagetable import Access, make_ttbr, walk
from emu.kernel.alternative import AltMismatch, check_alternatives
from emu.kernel.context import KernelContext
from emu.kernel.insn import decode_insn
from emu.kernel.jump_label import JumpMismatch, check_jump_labels, update_in_progress

CHUNK = 4096


@dataclass(frozen=True)
class CopyDifference:
    """The first word where one node's copy differs from node 0's image."""

    node: int
    va: int
    symbol: str
    region: str
    node0_word: int
    copy_word: int
    node0_disasm: str
    copy_disasm: str
    differing_words: int  # in this node's whole copy

    def message(self) -> str:
        return (
            f"node {self.node}: first difference at {self.va:#x} <{self.symbol}> ({self.region}): "
            f"node 0 has {self.node0_word:#010x} ({self.node0_disasm}), node {self.node} has "
            f"{self.copy_word:#010x} ({self.copy_disasm}); {self.differing_words} word(s) differ"
        )


@dataclass(frozen=True)
class MappingProblem:
    """A node whose root does not map ``va`` to its own copy."""

    node: int
    va: int
    symbol: str
    expected_pa: int
    found_pa: int | None

    def message(self) -> str:
        found = "no translation" if self.found_pa is None else f"{self.found_pa:#x}"
        return (
            f"node {self.node}: {self.va:#x} <{self.symbol}> maps to {found}, not to the "
            f"node's copy at {self.expected_pa:#x}"
        )


@dataclass
class VerifyResult:
    replicated: bool
    nodes: int
    start: int  # _stext
    end: int  # __end_rodata
    differences: list[CopyDifference] = field(default_factory=list)
    mappings: list[MappingProblem] = field(default_factory=list)
    alternatives: list[AltMismatch] = field(default_factory=list)
    jump_labels: list[JumpMismatch] = field(default_factory=list)
    jump_label_update_in_progress: bool = False

    @property
    def ok(self) -> bool:
        return not (self.differences or self.mappings or self.alternatives or self.jump_labels)

    def messages(self) -> list[str]:
        return [item.message() for group in (self.differences, self.mappings, self.alternatives,
                                             self.jump_labels) for item in group]  # fmt: skip

    def to_dict(self) -> dict:
        """JSON-ready, addresses and words as hex strings."""

        def hexed(item: object) -> dict:
            out = {}
            for key, value in asdict(item).items():
                hex_field = key in ("va", "site", "expected_pa", "found_pa") or key.endswith(
                    ("_word", "expected", "found"))
                out[key] = f"{value:#x}" if hex_field and isinstance(value, int) else value
            return out

        return {
            "ok": self.ok,
            "replicated": self.replicated,
            "nodes": self.nodes,
            "range": [f"{self.start:#x}", f"{self.end:#x}"],
            "differences": [hexed(d) for d in self.differences],
            "mappings": [hexed(m) for m in self.mappings],
            "alternatives": [hexed(a) for a in self.alternatives],
            "jump_labels": [hexed(j) for j in self.jump_labels],
            "jump_label_update_in_progress": self.jump_label_update_in_progress,
        }

    def format(self) -> str:
        copies = "no copies (replication off)" if not self.replicated else (
            f"{self.nodes - 1} cop{'y' if self.nodes == 2 else 'ies'}")
        head = (f"verify [{self.start:#x}, {self.end:#x}) on {self.nodes} node(s), {copies}: "
                + ("OK" if self.ok else "DIFFERENT"))  # fmt: skip
        return "\n".join([head, *(f"  {line}" for line in self.messages())])


def _region(ctx: KernelContext, va: int) -> str:
    image = ctx.image
    granule = ctx.geometry.granule
    ro_cut = image.sym("__start_ro_after_init") & ~(granule - 1)
    if va < image.sym("_etext"):
        return "text"
    if va < ro_cut:
        return "rodata"
    return "rodata tail and ro_after_init (copied, but every node maps node 0's)"


def _first_difference(a: bytes, b: bytes) -> tuple[int, int]:
    """(offset of the first differing 4-byte word, number of differing words) or (-1, 0)."""
    first, count = -1, 0
    for chunk in range(0, len(a), CHUNK):
        left, right = a[chunk : chunk + CHUNK], b[chunk : chunk + CHUNK]
        if left == right:
            continue
        for offset in range(0, len(left), 4):
            if left[offset : offset + 4] != right[offset : offset + 4]:
                count += 1
                if first < 0:
                    first = chunk + offset
    return first, count


def compare_copies(ctx: KernelContext) -> list[CopyDifference]:
    image = ctx.image
    repl = ctx.kernel.replication
    stext = image.sym("_stext")
    size = image.sym("__end_rodata") - stext
    original = ctx.physmem.read(image.pa_of(stext), size)
    differences = []
    for node, copy in enumerate(repl.text_copies):
        if copy is None:
            continue
        offset, count = _first_difference(original, ctx.physmem.read(copy, size))
        if offset < 0:
            continue
        va = stext + offset
        old = int.from_bytes(original[offset : offset + 4], "little")
        new = ctx.physmem.read_u32(copy + offset)
        differences.append(CopyDifference(
            node, va, ctx.kernel.symbolize(va), _region(ctx, va), old, new,
            decode_insn(old, va), decode_insn(new, va), count,
        ))  # fmt: skip
    return differences


def check_mappings(ctx: KernelContext) -> list[MappingProblem]:
    """Each node's root maps _stext and __start_rodata to the node's own text."""
    image = ctx.image
    kernel = ctx.kernel
    repl = kernel.replication
    read_u64 = ctx.physmem.read_u64
    ro_cut = image.sym("__start_ro_after_init") & ~(ctx.geometry.granule - 1)
    probes = [(image.sym("_stext"), Access.FETCH)]
    if image.sym("__start_rodata") < ro_cut:
        probes.append((image.sym("__start_rodata"), Access.READ))
    problems = []
    for node in range(len(repl.pgd_phys)):
        base = repl.node_text_pa(node, image)
        for va, access in probes:
            expected = base + va - image.sym("_stext")
            result = walk(read_u64, kernel.tcr, 0, make_ttbr(repl.pgd_phys[node]), va, access, 1)
            found = None if result.fault is not None and result.pa is None else result.pa
            if found != expected:
                problems.append(MappingProblem(node, va, kernel.symbolize(va), expected, found))
    return problems


def verify(ctx: KernelContext) -> VerifyResult:
    """Compare every node's copy with node 0's, and check what the nodes map and run."""
    image = ctx.image
    repl = ctx.kernel.replication
    result = VerifyResult(
        replicated=repl.enabled,
        nodes=len(repl.pgd_phys),
        start=image.sym("_stext"),
        end=image.sym("__end_rodata"),
    )
    result.differences = compare_copies(ctx)
    result.mappings = check_mappings(ctx)
    result.alternatives = check_alternatives(ctx.physmem, image, repl.text_copies)
    result.jump_label_update_in_progress = update_in_progress(ctx)
    if not result.jump_label_update_in_progress:
        result.jump_labels = check_jump_labels(ctx)
    return result
