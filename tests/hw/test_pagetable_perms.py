"""Every permission combination (AP x UXN x PXN x APTable x UXNTable x PXNTable x EL x
access) against a truth table transcribed from the ARM ARM, not derived from the code."""

from __future__ import annotations

import itertools

import pytest

from emu.hw.pagetable import (
    Access,
    FaultKind,
    Geometry,
    Prot,
    Walker,
    leaf_descriptor,
    leaf_permissions,
    make_tcr,
    make_ttbr,
    table_descriptor,
)

# AP[2:1] -> (EL1 read, EL1 write, EL0 read, EL0 write)     ARM ARM "Data access permissions"
AP_TRUTH = {
    0b00: (1, 1, 0, 0),
    0b01: (1, 1, 1, 1),
    0b10: (1, 0, 0, 0),
    0b11: (1, 0, 1, 0),
}
# APTable -> (EL0 access kept, write access kept)          "Hierarchical permission controls"
APTABLE_TRUTH = {
    0b00: (1, 1),
    0b01: (0, 1),
    0b10: (1, 0),
    0b11: (0, 0),
}


def expected(ap, uxn, pxn, ap_table, uxn_table, pxn_table, el):
    """(readable, writable, executable) at ``el``."""
    pr, pw, ur, uw = AP_TRUTH[ap]
    keep_el0, keep_write = APTABLE_TRUTH[ap_table]
    pw = pw and keep_write
    ur = ur and keep_el0
    uw = uw and keep_el0 and keep_write
    # EL0-writable memory is never executable at EL1; XN bits from any level win.
    px = not (pxn or pxn_table or uw)
    ux = not (uxn or uxn_table)
    return (bool(pr), bool(pw), px) if el == 1 else (bool(ur), bool(uw), ux)


G = Geometry(4096, 39)  # L1 table -> L2 table -> L3 page
L1, L2, L3 = 0x4000_0000, 0x4000_1000, 0x4000_2000
VA = (1 << 64) - (1 << 39) + 0x4020_3000  # L1 index 1, L2 index 1, L3 index 3
PAGE = 0x8765_4000


class Memory(dict):
    def read_u64(self, pa: int) -> int:
        return self.get(pa, 0)


def build(ap, uxn, pxn, ap_table, uxn_table, pxn_table, split_levels):
    """Tables for VA; with ``split_levels`` the table attributes are spread over the
    L1 and L2 table descriptors (the hierarchy ORs them), else all sit at L1."""
    mem = Memory()
    low = dict(ap_table=ap_table & 1, uxn_table=uxn_table, pxn_table=False)
    high = dict(ap_table=ap_table & 2, uxn_table=False, pxn_table=pxn_table)
    if split_levels:
        mem[L1 + 8 * 1] = table_descriptor(L2, **low)
        mem[L2 + 8 * 1] = table_descriptor(L3, **high)
    else:
        mem[L1 + 8 * 1] = table_descriptor(L2, ap_table=ap_table, uxn_table=uxn_table,
                                           pxn_table=pxn_table)
        mem[L2 + 8 * 1] = table_descriptor(L3)
    mem[L3 + 8 * 3] = leaf_descriptor(G, 3, PAGE, Prot(ap=ap, uxn=uxn, pxn=pxn))
    return mem


WALKER = Walker(make_tcr(G))
TTBR1 = make_ttbr(L1)
CASES = list(itertools.product(range(4), (False, True), (False, True), range(4),
                               (False, True), (False, True)))


@pytest.mark.parametrize("split_levels", [False, True], ids=["attrs-at-L1", "attrs-split"])
@pytest.mark.parametrize(("ap", "uxn", "pxn", "ap_table", "uxn_table", "pxn_table"), CASES)
def test_permission_truth_table(ap, uxn, pxn, ap_table, uxn_table, pxn_table, split_levels):
    mem = build(ap, uxn, pxn, ap_table, uxn_table, pxn_table, split_levels)
    for el in (0, 1):
        want = expected(ap, uxn, pxn, ap_table, uxn_table, pxn_table, el)
        for access, allowed in zip((Access.READ, Access.WRITE, Access.FETCH), want, strict=True):
            r = WALKER.walk(mem.read_u64, 0, TTBR1, VA + 0x10, access, el)
            assert (r.readable, r.writable, r.executable) == want
            assert r.pa == PAGE + 0x10 and r.level == 3
            if allowed:
                assert r.fault is None
            else:
                assert r.fault.kind == FaultKind.PERMISSION and r.fault.level == 3
        # The non-walk helpers agree: leaf_permissions and Prot.permissions.
        table_bits = r.table_attrs
        assert leaf_permissions(r.descriptor, table_bits, el) == want
        assert Prot.from_desc(r.descriptor).permissions(el, table_bits) == want


def test_block_leaf_uses_the_same_rules() -> None:
    mem = Memory()
    mem[L1 + 8 * 1] = table_descriptor(L2, ap_table=0b10)
    mem[L2 + 8 * 1] = leaf_descriptor(G, 2, 0x8000_0000, Prot(ap=0b01))
    r = WALKER.walk(mem.read_u64, 0, TTBR1, VA, Access.WRITE, 0)
    assert r.level == 2 and r.fault.kind == FaultKind.PERMISSION and r.fault.level == 2
    assert (r.readable, r.writable, r.executable) == (True, False, True)
    # EL0 write was removed by APTable, so EL1 may execute it again.
    r = WALKER.walk(mem.read_u64, 0, TTBR1, VA, Access.FETCH, 1)
    assert r.ok and r.executable
