"""Static keys and jump labels from the host, mirroring kernel/jump_label.c
and arch/arm64/kernel/jump_label.c.

Owns the ``__jump_table`` format (Linux's relative ``struct jump_entry``:
s32 code, s32 target, s64 key, each relative to its own field, bit 0 of the
key the site's branch flag), the rule that picks a site's instruction
(``jump_label_type``: key enabled XOR branch selects "B target", otherwise
NOP), the host's ``static_key_enable/disable/toggle`` (every site of the key
on every node, through ``patching.patch_text_nosync``), the same done by the
guest on a chosen CPU (``guest_static_key``), and ``check_jump_labels``,
which recomputes every site from the keys' states and compares each node's
text.  The guest's own update is ``static_key_update`` in
kernel_blob/patching.S; both keep ``jump_label_seq`` odd while an update is
being written, so a checker knows when sites may legitimately disagree.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from emu.errors import PatchError, UsageError
from emu.kernel.context import KernelContext
from emu.kernel.insn import AARCH64_INSN_NOP, aarch64_insn_gen_branch_imm
from emu.kernel.ktext import node_text_pas
from emu.kernel.patching import PatchedWord, check_patch, invalidate_text, write_text_word

JUMP_ENTRY = struct.Struct("<iiq")
JUMP_TABLE_START = "__start___jump_table"
JUMP_TABLE_STOP = "__stop___jump_table"
STATIC_KEY_ENABLED = 0  # offsetof(struct static_key, enabled)
KEY_TABLE = "static_key_table"
MUTEX, SEQ, FLIPS = "jump_label_mutex", "jump_label_seq", "static_key_flips"
OPS = {"disable": 0, "enable": 1, "toggle": 2}


@dataclass(frozen=True)
class JumpEntry:
    """One ``struct jump_entry`` with its relative fields resolved."""

    entry: int  # VA of the entry
    code: int  # the site
    target: int  # where "B" goes
    key: int  # the static_key
    branch: bool

    def insn(self, enabled: bool) -> int:
        """The site's instruction for a key in state ``enabled``."""
        if jump_label_type(self, enabled):
            return aarch64_insn_gen_branch_imm(self.code, self.target, False)
        return AARCH64_INSN_NOP


def jump_label_type(entry: JumpEntry, enabled: bool) -> bool:
    """JUMP_LABEL_JMP (True) or JUMP_LABEL_NOP (False): enabled XOR branch."""
    return bool(enabled) != entry.branch


def parse_jump_table(data: bytes, base: int) -> list[JumpEntry]:
    if len(data) % JUMP_ENTRY.size:
        raise PatchError(
            f"__jump_table at {base:#x} is {len(data)} bytes, not a whole number of "
            f"{JUMP_ENTRY.size}-byte entries"
        )
    mask = (1 << 64) - 1
    entries = []
    for offset in range(0, len(data), JUMP_ENTRY.size):
        code, target, key = JUMP_ENTRY.unpack_from(data, offset)
        va = base + offset
        raw_key = (va + 8 + key) & mask
        entries.append(JumpEntry(va, (va + code) & mask, (va + 4 + target) & mask,
                                 raw_key & ~3, bool(raw_key & 1)))  # fmt: skip
    return entries


def jump_entries(ctx: KernelContext) -> list[JumpEntry]:
    """The kernel's jump table, read from guest memory (it is shared, not copied)."""
    image = ctx.image
    if not (image.has(JUMP_TABLE_START) and image.has(JUMP_TABLE_STOP)):
        return []
    start, stop = image.sym(JUMP_TABLE_START), image.sym(JUMP_TABLE_STOP)
    return parse_jump_table(ctx.physmem.read(image.pa_of(start), stop - start), start)


def _u64_at(ctx: KernelContext, symbol: str) -> int:
    return ctx.physmem.read_u64(ctx.image.pa_of(ctx.image.sym(symbol)))


def _set_u64(ctx: KernelContext, symbol: str, value: int) -> None:
    ctx.physmem.write_u64(ctx.image.pa_of(ctx.image.sym(symbol)), value)


def key_address(ctx: KernelContext, key: str | int) -> int:
    """A static key given by symbol name or address; it must have jump table entries."""
    image = ctx.image
    if isinstance(key, str):
        if not image.has(key):
            raise UsageError(f"no static key {key!r} in {image.path}")
        address = image.sym(key)
    else:
        address = key
    if not any(entry.key == address for entry in jump_entries(ctx)):
        raise UsageError(f"{image.symbolize(address)} ({address:#x}) is not a static key with "
                         "jump label sites")  # fmt: skip
    return address


def static_key_enabled(ctx: KernelContext, key: str | int) -> bool:
    address = key_address(ctx, key)
    return bool(ctx.physmem.read_u32(ctx.image.pa_of(address) + STATIC_KEY_ENABLED))


def static_keys(ctx: KernelContext) -> dict[str, dict]:
    """Every key with sites: name -> {address, enabled, sites}."""
    keys: dict[int, list[JumpEntry]] = {}
    for entry in jump_entries(ctx):
        keys.setdefault(entry.key, []).append(entry)
    image = ctx.image
    return {
        image.symbolize(address): {
            "address": address,
            "enabled": bool(ctx.physmem.read_u32(image.pa_of(address))),
            "sites": [entry.code for entry in entries],
        }
        for address, entries in keys.items()
    }


def static_key_set(ctx: KernelContext, key: str | int, enabled: bool) -> list[PatchedWord]:
    """static_key_enable()/disable() from the host: every site, every node.

    The host takes jump_label_mutex the way the guest does; if a CPU holds
    it (parked in the middle of its own update) the host refuses rather than
    interleave with it.  Returns the sites it patched (none if the key was
    already in that state).
    """
    address = key_address(ctx, key)
    if _u64_at(ctx, MUTEX):
        raise PatchError(
            f"static key {ctx.image.symbolize(address)}: jump_label_mutex is held by a CPU "
            "in the middle of an update; run the machine until it is released"
        )
    pa = ctx.image.pa_of(address) + STATIC_KEY_ENABLED
    if bool(ctx.physmem.read_u32(pa)) == bool(enabled):
        return []
    entries = [entry for entry in jump_entries(ctx) if entry.key == address]
    for entry in entries:
        check_patch(ctx, entry.code, entry.insn(enabled), "static_key_set")
    _set_u64(ctx, MUTEX, 1)
    _set_u64(ctx, SEQ, _u64_at(ctx, SEQ) + 1)
    ctx.physmem.write_u32(pa, int(bool(enabled)))
    patched = [write_text_word(ctx, entry.code, entry.insn(enabled)) for entry in entries]
    invalidate_text(ctx.machine)
    _set_u64(ctx, FLIPS, _u64_at(ctx, FLIPS) + 1)
    _set_u64(ctx, SEQ, _u64_at(ctx, SEQ) + 1)
    _set_u64(ctx, MUTEX, 0)
    return patched


def static_key_enable(ctx: KernelContext, key: str | int) -> list[PatchedWord]:
    return static_key_set(ctx, key, True)


def static_key_disable(ctx: KernelContext, key: str | int) -> list[PatchedWord]:
    return static_key_set(ctx, key, False)


def static_key_toggle(ctx: KernelContext, key: str | int) -> list[PatchedWord]:
    return static_key_set(ctx, key, not static_key_enabled(ctx, key))


def key_index(ctx: KernelContext, key: str | int) -> int:
    """The index sys_static_key() knows ``key`` by (its place in static_key_table)."""
    address = key_address(ctx, key)
    image = ctx.image
    count = image.sym("NR_STATIC_KEYS")
    table = image.pa_of(image.sym(KEY_TABLE))
    for index in range(count):
        if ctx.physmem.read_u64(table + 8 * index) == address:
            return index
    raise UsageError(f"static key {image.symbolize(address)} is not in {KEY_TABLE}: the guest "
                     "cannot change it through sys_static_key")  # fmt: skip


def guest_static_key(ctx: KernelContext, cpu: int, key: str | int, op: str = "toggle") -> int:
    """sys_static_key() run by ``cpu`` (at EL1, as the syscall would): the key's new state."""
    if op not in OPS:
        raise UsageError(f"static key operation {op!r} is not one of {', '.join(OPS)}")
    result = ctx.call(cpu, "sys_static_key", key_index(ctx, key), OPS[op])["x0"]
    if result >> 63:
        raise PatchError(f"sys_static_key on CPU {cpu} failed with {result - (1 << 64)}")
    return result


@dataclass(frozen=True)
class JumpMismatch:
    node: int
    site: int
    symbol: str
    key: str
    expected: int
    found: int

    def message(self) -> str:
        return (
            f"node {self.node}: jump label {self.site:#x} <{self.symbol}> of {self.key} holds "
            f"{self.found:#010x}, expected {self.expected:#010x}"
        )


def update_in_progress(ctx: KernelContext) -> bool:
    """Whether some CPU is between the first and last write of a key update."""
    return bool(_u64_at(ctx, SEQ) & 1) if ctx.image.has(SEQ) else False


def check_jump_labels(ctx: KernelContext) -> list[JumpMismatch]:
    """Every site on every node against its key's state (meaningful when no
    update is in progress: see ``update_in_progress``)."""
    image = ctx.image
    copies = ctx.kernel.replication.text_copies
    problems = []
    for entry in jump_entries(ctx):
        enabled = bool(ctx.physmem.read_u32(image.pa_of(entry.key)))
        expected = entry.insn(enabled)
        for node, pa in node_text_pas(image, copies, entry.code):
            found = ctx.physmem.read_u32(pa)
            if found != expected:
                problems.append(JumpMismatch(node, entry.code, image.symbolize(entry.code),
                                             image.symbolize(entry.key), expected, found))
    return problems
