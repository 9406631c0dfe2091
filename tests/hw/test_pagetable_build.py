"""create_pgd_mapping / unmap_range (the kernel's builder, emu/kernel/mmu.py) and
leaf_mappings (emu/hw/pagetable.py): blocks where allowed, table reuse,
refusal to overwrite live mappings, contiguous hints, and random mappings for every
layout walked back through the pure walk."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.errors import ConfigError
from emu.hw.pagetable import (
    DESC_CONT,
    LEAF_ATTR_MASK,
    TABLE_PXN,
    TABLE_UXN,
    Access,
    FaultKind,
    Geometry,
    Prot,
    Walker,
    coalesce_mappings,
    leaf_mappings,
    make_tcr,
    make_ttbr,
)
from emu.kernel.mmu import create_pgd_mapping, unmap_range
from emu.kernel.pgtable_prot import (
    PAGE_DEVICE,
    PAGE_KERNEL,
    PAGE_KERNEL_EXEC,
    PAGE_KERNEL_RO,
    PAGE_KERNEL_ROX,
    PAGE_USER,
    PAGE_USER_EXEC,
    PAGE_USER_RO,
)


class Tree:
    """One table tree in a fresh SparseRam (conftest), with a walker for it."""

    def __init__(self, g: Geometry, new_ram, table_allocator) -> None:
        self.g = g
        self.ram = new_ram()
        self.alloc = table_allocator(self.ram, g.granule)
        self.pgd = self.alloc()
        self.walker = Walker(make_tcr(g))

    def map(self, va, pa, size, prot, **kw) -> None:
        create_pgd_mapping(self.ram, self.g, self.pgd, va, pa, size, prot, self.alloc, **kw)

    def walk(self, va, access=Access.READ, el=1):
        ttbr = make_ttbr(self.pgd)
        return self.walker.walk(self.ram.read_u64, ttbr, ttbr, va, access, el)


@pytest.fixture
def make_tree(new_ram, table_allocator):
    return lambda g: Tree(g, new_ram, table_allocator)


@pytest.fixture
def tree(make_tree, layout_geometry) -> Tree:
    return make_tree(layout_geometry)


def biggest_block(g: Geometry) -> int:
    return g.level_size(g.block_levels[0]) if g.block_levels else g.granule


def mid_kernel(g: Geometry) -> int:
    """A kernel VA at a top-level slot boundary with room for a few big blocks above."""
    return g.upper_base + (g.top_entries // 2) * g.pgdir_size


def test_blocks_where_aligned_pages_elsewhere(tree: Tree) -> None:
    g = tree.g
    block = biggest_block(g)
    va = mid_kernel(g) + 2 * block
    pa = 0x80 * block
    # One page in front, two big blocks, one page behind.
    tree.map(va - g.granule, pa - g.granule, 2 * block + 2 * g.granule, PAGE_KERNEL)
    leaves = leaf_mappings(tree.ram, g, tree.pgd)
    levels = sorted({m.level for m in leaves})
    assert levels == sorted({g.block_levels[0], 3})
    blocks = [m for m in leaves if m.level == g.block_levels[0]]
    assert [(m.va, m.pa, m.size) for m in blocks] == [(va, pa, block), (va + block, pa + block,
                                                                           block)]
    merged = coalesce_mappings(leaves)
    if g.block_levels[0] > g.start_level:
        assert [(m.va, m.pa, m.size) for m in merged] == [
            (va - g.granule, pa - g.granule, 2 * block + 2 * g.granule)]
    else:
        # Top-level blocks have no table above them (no UXNTable), so they stay apart
        # from the pages' runs: the table attributes differ.
        assert [(m.va, m.size) for m in merged] == [
            (va - g.granule, g.granule), (va, 2 * block), (va + 2 * block, g.granule)]
    for probe in (va - g.granule, va, va + block + 12345, va + 2 * block + 8):
        r = tree.walk(probe, Access.WRITE)
        assert r.ok and r.pa == probe - va + pa


def test_no_block_mappings_uses_pages_only(tree: Tree) -> None:
    g = tree.g
    va = g.upper_base + 4 * g.granule
    tree.map(va, 0x4000_0000 + 4 * g.granule, 40 * g.granule, PAGE_KERNEL_ROX,
             block_mappings=False)
    leaves = leaf_mappings(tree.ram, g, tree.pgd)
    assert {m.level for m in leaves} == {3} and len(leaves) == 40


def test_existing_tables_are_reused(tree: Tree) -> None:
    g = tree.g
    va = g.upper_base + 16 * g.granule
    tree.map(va, 0x4000_0000, g.granule, PAGE_KERNEL)
    tables = len(tree.alloc.allocated)
    assert tables == g.levels  # the root plus one table per lower level
    tree.map(va + 2 * g.granule, 0x5000_0000, 3 * g.granule, PAGE_KERNEL_RO)
    assert len(tree.alloc.allocated) == tables
    assert tree.walk(va + 3 * g.granule).pa == 0x5000_0000 + g.granule


def test_kernel_and_user_table_attributes(tree: Tree, make_tree) -> None:
    g = tree.g
    linear = g.upper_base + g.pgdir_size * (g.top_entries - 1)
    tree.map(g.upper_base, 0x4000_0000, g.granule, PAGE_KERNEL)
    tree.map(linear, 0x4000_0000, g.granule, PAGE_KERNEL, no_exec_tables=True)
    by_va = {m.va: m for m in leaf_mappings(tree.ram, g, tree.pgd, upper=True)}
    assert by_va[g.upper_base].table_attrs == TABLE_UXN
    assert by_va[linear].table_attrs == TABLE_UXN | TABLE_PXN
    user = make_tree(g)
    user.map(0, 0x4000_0000, g.granule, PAGE_USER_EXEC)
    assert leaf_mappings(user.ram, g, user.pgd, upper=False)[0].table_attrs == TABLE_PXN
    assert user.walk(0, Access.FETCH, el=0).ok
    # Linux's user tables carry PXNTable: EL1 can never run user code.
    assert user.walk(0, Access.FETCH, el=1).fault.kind == FaultKind.PERMISSION


def test_remapping_the_same_is_a_no_op_and_safe_changes_apply(tree: Tree) -> None:
    g = tree.g
    va = g.upper_base + 8 * g.granule
    tree.map(va, 0x4000_0000, 2 * g.granule, PAGE_KERNEL)
    before = dict(tree.ram.words)
    tree.map(va, 0x4000_0000, 2 * g.granule, PAGE_KERNEL)
    assert tree.ram.words == before
    # mark_rodata_ro(): PAGE_KERNEL -> PAGE_KERNEL_RO on a live mapping is allowed.
    tree.map(va, 0x4000_0000, 2 * g.granule, PAGE_KERNEL_RO)
    assert tree.walk(va, Access.WRITE).fault.kind == FaultKind.PERMISSION


@pytest.mark.parametrize(("pa", "prot", "why"), [
    (0x5000_0000, PAGE_KERNEL, "another PA"),
    (0x4000_0000, PAGE_USER, "AP[1] (user) change"),
    (0x4000_0000, PAGE_DEVICE, "memory type change"),
])
def test_live_mapping_is_not_silently_replaced(tree: Tree, pa: int, prot: Prot, why: str) -> None:
    g = tree.g
    va = g.upper_base + 8 * g.granule
    tree.map(va, 0x4000_0000, g.granule, PAGE_KERNEL)
    with pytest.raises(ConfigError, match=f"{va:#x}"):
        tree.map(va, pa, g.granule, prot)
    assert tree.walk(va).pa == 0x4000_0000, why


def test_global_to_non_global_is_allowed_but_not_back(tree: Tree) -> None:
    g = tree.g
    va = g.upper_base
    ng = Prot(ap=0, pxn=True, uxn=True, dbm=True, ng=True)
    tree.map(va, 0x4000_0000, g.granule, PAGE_KERNEL)
    tree.map(va, 0x4000_0000, g.granule, ng)
    with pytest.raises(ConfigError):
        tree.map(va, 0x4000_0000, g.granule, PAGE_KERNEL)


def test_page_inside_a_block_is_refused(tree: Tree) -> None:
    g = tree.g
    if not g.block_levels:
        pytest.skip("no blocks")
    block = biggest_block(g)
    va = g.upper_base + block
    tree.map(va, 0x10 * block, block, PAGE_KERNEL)
    with pytest.raises(ConfigError, match="block"):
        tree.map(va + g.granule, 0x4000_0000, g.granule, PAGE_KERNEL)


def test_block_sized_range_over_an_existing_table_descends(tree: Tree) -> None:
    g = tree.g
    if not g.block_levels:
        pytest.skip("no blocks")
    block = g.level_size(g.block_levels[-1])
    va = g.upper_base + block
    tree.map(va, 0x10 * block, g.granule, PAGE_KERNEL)  # creates the level-3 table
    tree.map(va + g.granule, 0x10 * block + g.granule, block - g.granule, PAGE_KERNEL)
    leaves = leaf_mappings(tree.ram, g, tree.pgd)
    assert {m.level for m in leaves} == {3}
    assert coalesce_mappings(leaves)[0].size == block


@pytest.mark.parametrize(("va", "pa", "size", "match"), [
    (0x1000, 0x4000_0800, 0x1000, "differ within"),
    (0x1000, 0x4000_1000, 0, "size"),
    (1 << 50, 0x4000_0000, 0x1000, "neither half"),
    ((1 << 39) - 0x1000, 0x4000_0000, 0x2000, "past the end"),
    (0x1000, (1 << 48) - 0x1000, 0x2000, "48 bits"),
])
def test_bad_requests(make_tree, va: int, pa: int, size: int, match: str) -> None:
    t = make_tree(Geometry(4096, 39))
    with pytest.raises(ConfigError, match=match):
        t.map(va, pa, size, PAGE_KERNEL)


def test_unaligned_start_and_size_round_like_linux(make_tree) -> None:
    t = make_tree(Geometry(4096, 39))
    t.map(0x1234, 0x4000_0234, 0x1000, PAGE_USER)  # covers pages 0x1000 and 0x2000
    assert [(m.va, m.size) for m in leaf_mappings(t.ram, t.g, t.pgd, upper=False)] == [
        (0x1000, 0x1000), (0x2000, 0x1000)]


def test_contiguous_hint_on_whole_aligned_groups(tree: Tree) -> None:
    t, g = tree, tree.g
    group = g.cont_entries(3) * g.granule
    va = g.upper_base + 4 * group
    # Start one page early and stop one page late: the first and last groups are partial.
    t.map(va - g.granule, 0x40 * group - g.granule, 2 * group + 2 * g.granule, PAGE_KERNEL_EXEC,
          block_mappings=False, cont_mappings=True)
    leaves = leaf_mappings(t.ram, g, t.pgd)
    cont = [m for m in leaves if m.descriptor & DESC_CONT]
    assert [m.va for m in cont] == [va + i * g.granule for i in range(2 * g.cont_entries(3))]
    assert t.walk(va + group + 40, Access.FETCH).pa == 0x40 * group + group + 40
    # Unmapping one page of a group strips the hint from the rest of that group only.
    assert unmap_range(t.ram, g, t.pgd, va + 3 * g.granule, g.granule) == 1
    leaves = leaf_mappings(t.ram, g, t.pgd)
    cont = [m.va for m in leaves if m.descriptor & DESC_CONT]
    assert cont == [va + group + i * g.granule for i in range(g.cont_entries(3))]


def test_contiguous_blocks_4k(make_tree) -> None:
    g = Geometry(4096, 48)
    t = make_tree(g)
    group = 16 << 21  # CONT_PMD_SIZE: 16 x 2 MiB
    va = g.upper_base + (1 << 30)
    t.map(va, 0x40_0000_0000, group, PAGE_KERNEL, cont_mappings=True)
    leaves = leaf_mappings(t.ram, g, t.pgd)
    assert len(leaves) == 16 and all(m.level == 2 and m.descriptor & DESC_CONT for m in leaves)
    # Without the flag (NO_CONT_MAPPINGS) no hint is set.
    t2 = make_tree(g)
    t2.map(va, 0x40_0000_0000, group, PAGE_KERNEL)
    assert not any(m.descriptor & DESC_CONT for m in leaf_mappings(t2.ram, g, t2.pgd))


def test_unmap_range_clears_leaves_and_refuses_to_split_blocks(tree: Tree) -> None:
    g = tree.g
    va = g.upper_base + 32 * g.granule
    tree.map(va, 0x4000_0000, 8 * g.granule, PAGE_KERNEL, block_mappings=False)
    assert unmap_range(tree.ram, g, tree.pgd, va + 2 * g.granule, 3 * g.granule) == 3
    for i in range(8):
        r = tree.walk(va + i * g.granule)
        if 2 <= i < 5:
            assert r.fault.kind == FaultKind.TRANSLATION and r.fault.level == 3
        else:
            assert r.ok
    assert unmap_range(tree.ram, g, tree.pgd, va + 2 * g.granule, 3 * g.granule) == 0
    if g.block_levels:
        block = biggest_block(g)
        bva = mid_kernel(g) + block
        tree.map(bva, 0x10 * block, block, PAGE_KERNEL)
        before = dict(tree.ram.words)
        with pytest.raises(ConfigError, match="split"):
            unmap_range(tree.ram, g, tree.pgd, bva, block - g.granule)
        assert tree.ram.words == before
        assert unmap_range(tree.ram, g, tree.pgd, bva, block) == 1
        assert not tree.walk(bva).ok


def test_leaf_listing_reports_a_table_outside_ram(make_tree) -> None:
    from emu.errors import GuestFault
    from emu.hw.pagetable import table_descriptor

    t = make_tree(Geometry(4096, 48))
    t.ram.write_u64(t.pgd, table_descriptor(0x10_0000_0000))
    with pytest.raises(GuestFault, match="outside RAM"):
        leaf_mappings(t.ram, t.g, t.pgd, upper=False)


# ------------------------------------------------------------------ random mappings

PROTS = [PAGE_KERNEL, PAGE_KERNEL_RO, PAGE_KERNEL_ROX, PAGE_KERNEL_EXEC, PAGE_DEVICE,
         PAGE_USER, PAGE_USER_RO, PAGE_USER_EXEC]


@st.composite
def mapping_sets(draw, g: Geometry):
    """Up to four non-overlapping requests inside one top-level slot of either half."""
    upper = draw(st.booleans())
    slot = draw(st.integers(0, g.top_entries - 1))
    base = (g.upper_base if upper else 0) + slot * g.pgdir_size
    block = g.level_size(g.block_levels[-1]) if g.block_levels else g.granule
    span = min(g.pgdir_size, 8 * block)
    pages = span // g.granule
    requests, used = [], []
    for _ in range(draw(st.integers(1, 4))):
        if g.block_levels and draw(st.booleans()):
            start = draw(st.integers(0, span // block - 1)) * (block // g.granule)
            count = (block // g.granule) * draw(st.integers(1, 2))
            frame = draw(st.integers(1, 1 << 10)) * (block // g.granule)
        else:
            start = draw(st.integers(0, pages - 1))
            count = draw(st.integers(1, 24))
            frame = draw(st.integers(1, 1 << 20))
        count = min(count, pages - start)
        if any(start < e and s < start + count for s, e in used):
            continue
        used.append((start, start + count))
        requests.append((base + start * g.granule, frame * g.granule, count * g.granule,
                         draw(st.sampled_from(PROTS)), draw(st.booleans())))
    return upper, requests


def _roundtrip(t: Tree, data) -> None:
    g = t.g
    upper, requests = data.draw(mapping_sets(g))
    for va, pa, size, prot, blocks in requests:
        t.map(va, pa, size, prot, block_mappings=blocks)
    leaves = leaf_mappings(t.ram, g, t.pgd, upper=upper)
    covered = sum(m.size for m in leaves)
    assert covered == sum(size for _, _, size, _, _ in requests)
    for va, pa, size, prot, _ in requests:
        inside = [m for m in leaves if va <= m.va < va + size]
        assert sum(m.size for m in inside) == size
        for m in inside:
            assert m.pa == pa + (m.va - va)
            assert (m.descriptor ^ prot.bits()) & LEAF_ATTR_MASK == 0
        offsets = {0, size - 8, data.draw(st.integers(0, size - 1)) & ~7}
        for off in offsets:
            for el in (0, 1):
                r = t.walk(va + off, Access.READ, el)
                assert r.pa == pa + off and r.attrs == prot
                # Builder policy: UXNTable on kernel tables, PXNTable on user tables;
                # a block at the top level has no table descriptor above it.
                table_bits = 0 if r.level == g.start_level else TABLE_UXN if upper else TABLE_PXN
                assert (r.readable, r.writable, r.executable) == prot.permissions(el, table_bits)
                assert (r.fault is None) == r.readable
    # Holes between requests do not translate.
    for va, _, size, _, _ in requests:
        after = va + size
        in_a_half = after < g.lower_end or g.upper_base <= after < 1 << 64
        if in_a_half and not any(v <= after < v + s for v, _, s, _, _ in requests):
            r = t.walk(after)
            assert r.fault is not None and r.fault.kind == FaultKind.TRANSLATION


# The factory fixtures are stateless, so sharing them across examples is safe.
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_mappings_walk_back(make_tree, layout_geometry: Geometry, data) -> None:
    _roundtrip(make_tree(layout_geometry), data)


def test_live_contiguous_mappings_cannot_change(make_tree) -> None:
    g = Geometry(4096, 48)
    t = make_tree(g)
    va = g.upper_base + (1 << 30)
    t.map(va, 0x4000_0000, 16 * g.granule, PAGE_KERNEL, block_mappings=False, cont_mappings=True)
    # PAGE_KERNEL -> PAGE_KERNEL_RO is a safe change, but not on a contiguous range.
    with pytest.raises(ConfigError, match="refusing"):
        t.map(va, 0x4000_0000, 16 * g.granule, PAGE_KERNEL_RO, block_mappings=False,
              cont_mappings=True)
