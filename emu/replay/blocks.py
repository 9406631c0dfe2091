"""Translated-block sizes for traces that give only each block's start: from
the kernel's own instructions (a vmlinux ELF or an arm64 ``Image``), or from
the records that follow (NextRecordSizer).

QEMU's AArch64 translator (target/arm/translate-a64.c, 7.2) ends a block
after any instruction that changes the PC other than by falling through
(B, BL, B.cond, CBZ/CBNZ, TBZ/TBNZ, BR/BLR/RET/ERET and their
pointer-authenticated forms), after exception generation (SVC, HVC, SMC,
BRK, HLT), after MSR writes to system registers and PSTATE fields, ISB, WFI,
WFE and YIELD, at the end of a 4 KiB guest page, and at 512 instructions
(TCG_MAX_INSNS).  ``block_ends`` marks those; the image is the
unpatched kernel, so a site that alternatives or static keys rewrite at boot
(a NOP that becomes a branch) can end a block where the image does not: an
estimate, which the report says.  Checked against QEMU's own in_asm
listings of the Debian 6.1 kernel: the same size for 99.9% of the blocks
entered during boot and 98.8% in a syscall loop (tests/replay/test_blocks.py).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emu.fileio import read_input_file
from emu.replay.errors import TraceError
from emu.replay.records import INSN_BYTES, KERNEL_SPACE, REWOUND, Records
from emu.replay.symbols import KernelMap

PAGE_BYTES = 4096  # QEMU's TARGET_PAGE_SIZE for AArch64 system emulation
MAX_BLOCK_INSNS = 512  # TCG_MAX_INSNS
IMAGE_MAGIC_OFFSET = 0x38  # arm64 Image header (Documentation/arm64/booting.rst)
IMAGE_MAGIC = b"ARM\x64"
MAX_IMAGE = 1 << 30  # a vmlinux with debug info is a few hundred MiB

# (mask, value) of the A64 encodings after which QEMU ends a block
BLOCK_ENDERS = (
    (0x7C000000, 0x14000000),  # B, BL
    (0xFF000010, 0x54000000),  # B.cond
    (0x7E000000, 0x34000000),  # CBZ, CBNZ
    (0x7E000000, 0x36000000),  # TBZ, TBNZ
    (0xFE000000, 0xD6000000),  # BR, BLR, RET, ERET, DRPS and the PAC forms
    (0xFF000000, 0xD4000000),  # SVC, HVC, SMC, BRK, HLT, DCPS
    (0xFFF00000, 0xD5100000),  # MSR (register)
    (0xFFF8F01F, 0xD500401F),  # MSR (immediate): PSTATE fields
    (0xFFFFF0FF, 0xD50330DF),  # ISB
    (0xFFFFFFDF, 0xD503205F),  # WFE, WFI
    (0xFFFFFFFF, 0xD503203F),  # YIELD
)


def block_ends(words: np.ndarray) -> np.ndarray:
    """True for each instruction word after which QEMU ends a block."""
    ends = np.zeros(len(words), bool)
    for mask, value in BLOCK_ENDERS:
        ends |= (words & np.uint32(mask)) == np.uint32(value)
    return ends


@dataclass(frozen=True)
class ImageBlocks:
    """Block length, in instructions, from every instruction of kernel text."""

    base: int  # VA of words[0]
    lengths: np.ndarray  # int64: instructions from this one to the block's end
    path: str

    @classmethod
    def from_words(cls, base: int, words: np.ndarray, path: str = "") -> ImageBlocks:
        count = len(words)
        index = np.arange(count, dtype=np.int64)
        ends = block_ends(words)
        # The next ender at or after each instruction (count if none).
        upcoming = np.where(ends, index, count)
        upcoming = np.minimum.accumulate(upcoming[::-1])[::-1]
        length = upcoming - index + 1
        page_left = (PAGE_BYTES - ((base % PAGE_BYTES + index * INSN_BYTES) % PAGE_BYTES)) // INSN_BYTES
        length = np.minimum(np.minimum(length, page_left), MAX_BLOCK_INSNS)
        return cls(base, length.astype(np.int64), path)

    def sizes(self, pcs: np.ndarray) -> np.ndarray:
        """Block bytes for each PC; 0 outside the image's text or misaligned."""
        offset = (pcs - np.uint64(self.base)).astype(np.int64)  # wraps below base
        inside = (pcs >= np.uint64(self.base)) & \
            (offset < len(self.lengths) * INSN_BYTES) & (offset % INSN_BYTES == 0)
        result = np.zeros(len(pcs), np.int64)
        result[inside] = self.lengths[offset[inside] // INSN_BYTES] * INSN_BYTES
        return result


def load_image_blocks(path: str | Path, kernel: KernelMap) -> ImageBlocks:
    """Block lengths from ``_stext`` to the end of the loaded image (kernel
    text, and init text after rodata) of a vmlinux ELF or an arm64 Image (raw
    or gzip), which starts at ``_text``."""
    shown = str(path)
    try:
        raw = read_input_file(path, MAX_IMAGE)
    except OSError as err:
        raise TraceError(f"cannot read the kernel image: {err.strerror or err}", shown) from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise TraceError(f"bad gzip kernel image: {err}", shown) from None
    if raw[:4] == b"\x7fELF":
        text = _elf_text(raw, kernel, shown)
    elif raw[IMAGE_MAGIC_OFFSET:IMAGE_MAGIC_OFFSET + 4] == IMAGE_MAGIC:
        if kernel.text is None:
            raise TraceError("an arm64 Image needs _text in the System.map (its load VA)", shown)
        start = kernel.stext - kernel.text
        end = kernel.etext - kernel.text
        if end > len(raw):
            raise TraceError(f"the Image is {len(raw):,} bytes, shorter than _etext - _text "
                             f"= {end:,}: not this System.map's kernel", shown)  # fmt: skip
        text = raw[start:]
    else:
        raise TraceError("neither a vmlinux ELF nor an arm64 Image (no ARM\\x64 magic)", shown)
    words = np.frombuffer(text[: len(text) // 4 * 4], "<u4")
    return ImageBlocks.from_words(kernel.stext, words, shown)


def _elf_text(raw: bytes, kernel: KernelMap, shown: str) -> bytes:
    import io

    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(io.BytesIO(raw))
        for segment in elf.iter_segments():
            if segment["p_type"] != "PT_LOAD":
                continue
            start, size = segment["p_vaddr"], segment["p_filesz"]
            if start <= kernel.stext and kernel.etext <= start + size:
                return segment.data()[kernel.stext - start:]
    except ELFError as err:
        raise TraceError(f"bad ELF kernel image: {err}", shown) from None
    raise TraceError(f"no loadable segment holds [_stext, _etext) = [{kernel.stext:#x}, "
                     f"{kernel.etext:#x})", shown)  # fmt: skip


class NextRecordSizer:
    """Sizes from the next record of the same CPU, for records no other source
    sized.  A block that falls through ends where its CPU's next record
    starts; one that branches forward within its page looks longer, one that
    branches elsewhere says nothing.  So each PC's block is taken to be the
    shortest step ahead (within its 4 KiB page and ``MAX_BLOCK_INSNS``) seen
    from that PC so far in the trace, this chunk included; a PC never seen
    stepping ahead gets one instruction (a lower bound).  A block QEMU rewound
    for I/O (size REWOUND) ran exactly up to its CPU's next record, which may
    be its own first instruction: then it ran nothing and is dropped.  Each
    CPU's last unsized record waits for the next chunk."""

    def __init__(self) -> None:
        self.pending = Records.empty()
        self.guessed_next = 0  # records sized by the shortest step of their PC
        self.guessed_one = 0  # records given one instruction
        self.rewound = 0  # rewound blocks measured to the next record (exact)
        # PCs (sorted) and the shortest step ahead seen from each
        self._table = (np.zeros(0, np.uint64), np.zeros(0, np.int64))

    def _learn(self, pcs: np.ndarray, steps: np.ndarray) -> None:
        """Fold this chunk's steps into the table (sorted PCs, shortest steps)."""
        if not len(pcs):
            return
        keys, values = self._table
        keys = np.concatenate([keys, pcs])
        values = np.concatenate([values, steps])
        unique, inverse = np.unique(keys, return_inverse=True)
        least = np.full(len(unique), np.iinfo(np.int64).max, np.int64)
        np.minimum.at(least, inverse, values)
        self._table = (unique, least)

    @property
    def shortest(self) -> dict[int, int]:
        """PC -> the shortest step ahead seen from it (for reports and tests)."""
        keys, values = self._table
        return dict(zip(keys.tolist(), values.tolist(), strict=True))

    def _lookup(self, pcs: np.ndarray) -> np.ndarray:
        """The shortest step of each PC, 0 where none is known."""
        result = np.zeros(len(pcs), np.int64)
        keys, values = self._table
        if not len(keys) or not len(pcs):
            return result
        at = np.minimum(np.searchsorted(keys, pcs), len(keys) - 1)
        hit = keys[at] == pcs
        result[hit] = values[at[hit]]
        return result

    def _estimate(self, records: Records, index: np.ndarray) -> None:
        """Size ``records[index]`` (unsized, not rewound) from the table."""
        estimate = self._lookup(records.pc[index])
        kernel = records.pc[index] >= np.uint64(KERNEL_SPACE)  # the others are not played
        self.guessed_next += int(np.count_nonzero(kernel & (estimate > 0)))
        self.guessed_one += int(np.count_nonzero(kernel & (estimate == 0)))
        records.size[index] = np.where(estimate > 0, estimate, INSN_BYTES)

    def feed(self, records: Records) -> Records:
        """Records of this chunk (and the held-back ones) with every size
        known, except each CPU's last unsized record, held for the next call."""
        records = Records.concat([self.pending, records]) if len(self.pending) else records
        unsized = records.size <= 0  # 0: unknown; REWOUND: ends at the next record
        if not unsized.any():
            self.pending = Records.empty()
            return records
        order = np.argsort(records.cpu, kind="stable")  # records are in line order
        cpu = records.cpu[order]
        pc = records.pc[order]
        last_of_cpu = np.ones(len(order), bool)
        last_of_cpu[:-1] = cpu[1:] != cpu[:-1]
        hold = order[last_of_cpu & unsized[order]]
        nxt = np.empty(len(order), np.uint64)
        nxt[:-1] = pc[1:]
        nxt[-1] = pc[-1]
        gap = (nxt - pc).astype(np.int64)  # modulo 2^64: negative when behind
        page_left = PAGE_BYTES - (pc % np.uint64(PAGE_BYTES)).astype(np.int64)
        limit = np.minimum(page_left, MAX_BLOCK_INSNS * INSN_BYTES)
        rewound = records.size[order] == REWOUND
        target = unsized[order] & ~last_of_cpu
        plain = unsized[order] & ~rewound
        ahead = ~last_of_cpu & (gap > 0) & (gap <= limit)
        self._learn(pc[plain & ahead], gap[plain & ahead])
        size = records.size
        # Rewound blocks: exactly to the next record; 0 means they ran nothing.
        exact = target & rewound & (gap >= 0) & (gap <= limit)
        size[order[exact]] = gap[exact]
        kernel = pc >= np.uint64(KERNEL_SPACE)
        self.rewound += int(np.count_nonzero(exact & kernel))
        lost = order[target & rewound & ~exact]
        size[lost] = INSN_BYTES
        self.guessed_one += int(np.count_nonzero(records.pc[lost] >= np.uint64(KERNEL_SPACE)))
        self._estimate(records, order[target & ~rewound])
        keep = np.ones(len(records), bool)
        keep[hold] = False
        keep[order[exact & (gap == 0)]] = False  # rewound before its first instruction ran
        self.pending = records.take(np.sort(hold))
        return records.take(np.flatnonzero(keep))

    def finish(self) -> Records:
        """The held-back records, sized from the table (rewound: one instruction)."""
        rest = self.pending
        self.pending = Records.empty()
        rewound = np.flatnonzero(rest.size == REWOUND)
        rest.size[rewound] = INSN_BYTES
        self.guessed_one += int(np.count_nonzero(rest.pc[rewound] >= np.uint64(KERNEL_SPACE)))
        self._estimate(rest, np.flatnonzero(rest.size == 0))
        return rest
