"""Block sizes without in_asm: QEMU's block-ending rules checked against the
real translations of the in_asm excerpt, the image decoder by hand and on
the real Debian image, and the next-record rule."""

from __future__ import annotations

import numpy as np
import pytest
from replay_testdata import DEBIAN_FULL_MAP, DEBIAN_IMAGE, QEMU_INASM

from emu.replay.blocks import (
    MAX_BLOCK_INSNS,
    PAGE_BYTES,
    ImageBlocks,
    NextRecordSizer,
    block_ends,
    load_image_blocks,
)
from emu.replay.qemu_log import parse_qemu
from emu.replay.records import Records
from emu.replay.symbols import load_system_map

NOP, RET, B_NEXT, SVC0, ISB = 0xD503201F, 0xD65F03C0, 0x14000001, 0xD4000001, 0xD5033FDF
MSR_TTBR1, DAIFCLR_3, MRS_CTR, LDR = 0xD5182020, 0xD50343FF, 0xD53B0023, 0xF9400296


def in_asm_blocks():
    """(first PC, [instruction words]) of every translation in the excerpt."""
    blocks, current = [], None
    for line in QEMU_INASM.read_text().splitlines():
        if line.startswith("IN:"):
            current = []
            blocks.append(current)
        elif line.startswith("0x") and current is not None:
            address, word = line.split()[:2]
            current.append((int(address[:-1], 16), int(word, 16)))
        else:
            current = None
    return [block for block in blocks if block]


def test_real_translations_end_where_the_rules_say():
    blocks = in_asm_blocks()
    assert len(blocks) > 50
    for block in blocks:
        words = np.array([word for _, word in block], np.uint32)
        ends = block_ends(words)
        last_pc = block[-1][0]
        at_limit = (last_pc + 4) % PAGE_BYTES == 0 or len(block) == MAX_BLOCK_INSNS
        assert not ends[:-1].any(), [hex(pc) for pc, _ in block]
        assert ends[-1] or at_limit, [hex(pc) for pc, _ in block]


def test_block_end_encodings():
    words = np.array([NOP, RET, B_NEXT, SVC0, ISB, MSR_TTBR1, DAIFCLR_3, MRS_CTR, LDR], np.uint32)
    assert block_ends(words).tolist() == [False, True, True, True, True, True, True, False, False]


def test_image_blocks_by_hand():
    base = 0xFFFF800008010000
    words = np.array([NOP, NOP, B_NEXT, NOP, RET], np.uint32)
    blocks = ImageBlocks.from_words(base, words)
    assert blocks.lengths.tolist() == [3, 2, 1, 2, 1]
    pcs = np.array([base, base + 8, base + 12, base + 2, base - 4, base + 20], np.uint64)
    assert blocks.sizes(pcs).tolist() == [12, 4, 8, 0, 0, 0]
    # A block stops at the end of its 4 KiB page.
    near_end = base + PAGE_BYTES - 8
    blocks = ImageBlocks.from_words(near_end, np.array([NOP] * 4 + [RET], np.uint32))
    assert blocks.lengths.tolist() == [2, 1, 3, 2, 1]


K = 0xFFFF800008000000  # kernel space: only its records count as guessed


def test_next_record_sizer():
    # CPU 0: a block falling through to the next (+12), then a backward jump (one
    # instruction), then its last record waits; CPU 1: a jump to another page.
    records = Records(
        np.array([0, 1, 0, 0, 1, 0], np.int64),
        np.array([0x1000, 0x5000, 0x100C, 0x0F00, 0x9000, 0x0F10], np.uint64) + np.uint64(K),
        np.zeros(6, np.int64),
        np.arange(1, 7, dtype=np.int64),
    )
    sizer = NextRecordSizer()
    done = sizer.feed(records)
    assert dict(zip(done.line.tolist(), done.size.tolist(), strict=True)) == {1: 12, 2: 4, 3: 4,
                                                                            4: 16}  # fmt: skip
    rest = sizer.finish()
    assert rest.line.tolist() == [5, 6] and rest.size.tolist() == [4, 4]
    assert (sizer.guessed_next, sizer.guessed_one) == (2, 4)


@pytest.mark.skipif(not (DEBIAN_IMAGE.exists() and DEBIAN_FULL_MAP.exists()),
                    reason="the Debian 6.1 arm64 image and its -dbg System.map are not in "
                    "/work/cache/debian-arm64")  # fmt: skip
def test_real_image_sizes_match_in_asm():
    kernel = load_system_map(DEBIAN_FULL_MAP)
    image = load_image_blocks(DEBIAN_IMAGE, kernel)
    chunks, _ = parse_qemu(QEMU_INASM)
    records = Records.concat(list(chunks))
    known = records.size > 0
    assert known.sum() > 100
    estimated = image.sizes(records.pc[known])
    assert (estimated == records.size[known]).mean() > 0.98


def test_next_record_sizer_takes_each_pcs_shortest_step():
    """One PC run twice: once followed by a forward branch's target (+40), once
    falling through (+12): both runs are taken as 12 bytes; a third run,
    followed by a jump back, too."""
    pcs = [0x2000, 0x2028, 0x2000, 0x200C, 0x2000, 0x1000, 0x1004]
    records = Records(np.zeros(7, np.int64), np.array(pcs, np.uint64) + np.uint64(K),
                      np.zeros(7, np.int64), np.arange(1, 8, dtype=np.int64))  # fmt: skip
    sizer = NextRecordSizer()
    done = Records.concat([sizer.feed(records), sizer.finish()])
    sizes = dict(zip(done.line.tolist(), done.size.tolist(), strict=True))
    assert [sizes[1], sizes[3], sizes[5]] == [12, 12, 12]
    assert sizes[6] == 4 and sizes[7] == 4  # 0x1000's step (+4) is learnt; 0x1004 never steps
    assert sizer.shortest[K + 0x2000] == 12

