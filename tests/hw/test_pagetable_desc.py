"""Descriptor, TCR and TTBR encodings against values assembled by hand from the
ARM ARM bit positions and Linux's pgtable-prot.h."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.errors import ConfigError
from emu.hw.pagetable import (
    MAIR_EL1_LINUX,
    DescKind,
    Geometry,
    Prot,
    decode_descriptor,
    decode_tcr,
    decode_ttbr,
    leaf_descriptor,
    make_tcr,
    make_ttbr,
    table_descriptor,
)
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

G4K = Geometry(4096, 48)
PA = 0x4000_0000

# Hardware page descriptors of the Linux protections for PA 0x40000000. Bits: 0/1
# valid/page, 6 AP[1] user, 7 AP[2] rdonly, 9:8 SH=3, 10 AF, 11 nG, 51 DBM,
# 53 PXN, 54 UXN; AttrIndx 0 (MT_NORMAL) or 4 (device nGnRE, bits 4:2 = 0b100).
LINUX_PAGES = [
    (PAGE_KERNEL, 0x0068_0000_4000_0703),
    (PAGE_KERNEL_RO, 0x0060_0000_4000_0783),
    (PAGE_KERNEL_ROX, 0x0040_0000_4000_0783),
    (PAGE_KERNEL_EXEC, 0x0048_0000_4000_0703),
    (PAGE_DEVICE, 0x0068_0000_4000_0713),
    (PAGE_USER, 0x0068_0000_4000_0F43),
    (PAGE_USER_RO, 0x0060_0000_4000_0FC3),
    (PAGE_USER_EXEC, 0x0020_0000_4000_0FC3),
]


@pytest.mark.parametrize(("prot", "expected"), LINUX_PAGES)
def test_linux_page_descriptors(prot: Prot, expected: int) -> None:
    assert leaf_descriptor(G4K, 3, PA, prot) == expected
    decoded = decode_descriptor(G4K, 3, expected)
    assert decoded.kind == DescKind.PAGE and decoded.address == PA and decoded.prot == prot


def test_block_descriptor_has_type_bits_01() -> None:
    assert leaf_descriptor(G4K, 2, 0x4020_0000, PAGE_KERNEL) == 0x0068_0000_4020_0701
    assert leaf_descriptor(G4K, 1, 0x4000_0000, PAGE_KERNEL_ROX) == 0x0040_0000_4000_0781
    d = decode_descriptor(G4K, 1, 0x0040_0000_4000_0781)
    assert d.kind == DescKind.BLOCK and d.address == 0x4000_0000 and d.prot == PAGE_KERNEL_ROX


def test_table_descriptor_bits() -> None:
    assert table_descriptor(0x4100_0000) == 0x4100_0003
    assert table_descriptor(0x4100_0000, uxn_table=True) == 0x1000_0000_4100_0003
    assert table_descriptor(0x4100_0000, pxn_table=True, ap_table=0b11, ns_table=True) == (
        0xE800_0000_4100_0003)
    d = decode_descriptor(G4K, 0, 0xE800_0000_4100_0003)
    assert d.kind == DescKind.TABLE and d.address == 0x4100_0000 and d.ap_table == 0b11
    with pytest.raises(ConfigError):
        table_descriptor(0x4100_0800)
    with pytest.raises(ConfigError):
        table_descriptor(0x4100_0000, ap_table=4)


@pytest.mark.parametrize(("granule", "va_bits", "level", "desc", "kind"), [
    (4096, 48, 0, 0x4000_0001, DescKind.RESERVED),  # no L0 block with 4K
    (4096, 48, 1, 0x4000_0001, DescKind.BLOCK),
    (16384, 47, 1, 0x4000_0001, DescKind.RESERVED),  # no L1 block with 16K
    (65536, 48, 1, 0x4000_0001, DescKind.RESERVED),  # L1 block needs 52-bit PA
    (65536, 48, 2, 0x4000_0001, DescKind.BLOCK),
    (4096, 48, 3, 0x4000_0001, DescKind.RESERVED),  # 0b01 at level 3
    (4096, 48, 3, 0x4000_0003, DescKind.PAGE),
    (4096, 48, 2, 0x4000_0002, DescKind.INVALID),
])
def test_descriptor_classification(granule, va_bits, level, desc, kind) -> None:
    assert decode_descriptor(Geometry(granule, va_bits), level, desc).kind == kind


def test_leaf_descriptor_rejects_bad_leaves() -> None:
    with pytest.raises(ConfigError, match="no block"):
        leaf_descriptor(G4K, 0, 0, PAGE_KERNEL)
    with pytest.raises(ConfigError, match="aligned"):
        leaf_descriptor(G4K, 2, 0x4000_1000, PAGE_KERNEL)
    with pytest.raises(ConfigError):
        leaf_descriptor(G4K, 3, 1 << 48, PAGE_KERNEL)
    with pytest.raises(ConfigError):
        Prot(attr_index=8)


def test_mair_matches_linux_mair_el1_set() -> None:
    # MT_NORMAL 0xff @0, MT_NORMAL_TAGGED 0xff @1, NC 0x44 @2, nGnRnE 0x00 @3, nGnRE 0x04 @4
    assert MAIR_EL1_LINUX == 0x0000_0004_0044_FFFF


prots = st.builds(
    Prot, attr_index=st.integers(0, 7), ap=st.integers(0, 3), sh=st.integers(0, 3),
    af=st.booleans(), ng=st.booleans(), ns=st.booleans(), pxn=st.booleans(),
    uxn=st.booleans(), dbm=st.booleans(), contiguous=st.booleans(), gp=st.booleans())


@settings(max_examples=150, deadline=None)
@given(prot=prots, frame=st.integers(0, (1 << 36) - 1), granule=st.sampled_from([4096, 16384, 65536]))
def test_leaf_round_trip(prot: Prot, frame: int, granule: int) -> None:
    g = Geometry(granule, 48)
    pa = (frame * granule) & ((1 << 48) - 1)
    desc = leaf_descriptor(g, 3, pa, prot)
    d = decode_descriptor(g, 3, desc)
    assert (d.kind, d.address, d.prot) == (DescKind.PAGE, pa, prot)
    assert Prot.from_desc(desc) == prot


# ------------------------------------------------------------------------ TCR and TTBR

def test_linux_tcr_for_4k_48() -> None:
    # T0SZ=16, IRGN0=ORGN0=WBWA(1), SH0=inner(3), TG0=4K(0), T1SZ=16, A1, IRGN1=ORGN1=1,
    # SH1=3, TG1=4K(0b10), IPS=48 bits(0b101), AS=16-bit, TBI0.
    assert make_tcr(G4K) == 0x0000_0035_B550_3510
    t = decode_tcr(0x0000_0035_B550_3510)
    assert (t.t0sz, t.t1sz, t.tg0, t.tg1, t.ips_bits) == (16, 16, 4096, 4096, 48)
    assert t.a1 and t.as16 and t.tbi0 and not t.tbi1 and not t.epd0 and not t.epd1
    assert (t.irgn0, t.orgn0, t.sh0, t.irgn1, t.orgn1, t.sh1) == (1, 1, 3, 1, 1, 3)
    assert t.geometry0 == t.geometry1 == G4K


@pytest.mark.parametrize(("granule", "tg0", "tg1"), [(4096, 0b00, 0b10), (16384, 0b10, 0b01),
                                                     (65536, 0b01, 0b11)])
def test_tg_encodings_differ_between_halves(granule: int, tg0: int, tg1: int) -> None:
    tcr = make_tcr(Geometry(granule, 42))
    assert (tcr >> 14) & 3 == tg0 and (tcr >> 30) & 3 == tg1
    assert decode_tcr(tcr).tg0 == decode_tcr(tcr).tg1 == granule


def test_reserved_tcr_values_decode_to_documented_choices() -> None:
    t = decode_tcr(0b11 << 14 | 0b00 << 30 | 0b111 << 32)
    assert t.tg0 == 4096 and t.tg1 == 4096 and t.ips_bits == 48
    assert decode_tcr(0b110 << 32).ips_bits == 52 and decode_tcr(0b110 << 32).oa_bits == 48
    assert decode_tcr(0).ips_bits == 32


@settings(max_examples=100, deadline=None)
@given(g1=st.sampled_from([(4096, 39), (4096, 48), (16384, 36), (16384, 47), (65536, 42)]),
       g0=st.sampled_from([(4096, 39), (16384, 48), (65536, 25)]),
       ips=st.sampled_from([32, 36, 40, 42, 44, 48, 52]), flags=st.lists(st.booleans(), min_size=6,
                                                                         max_size=6))
def test_tcr_round_trip(g1, g0, ips, flags) -> None:
    epd0, epd1, tbi0, tbi1, a1, as16 = flags
    tcr = make_tcr(Geometry(*g1), geometry0=Geometry(*g0), ips_bits=ips, epd0=epd0, epd1=epd1,
                   tbi0=tbi0, tbi1=tbi1, a1=a1, as16=as16)
    t = decode_tcr(tcr)
    assert t.geometry1 == Geometry(*g1) and t.geometry0 == Geometry(*g0)
    assert (t.ips_bits, t.epd0, t.epd1, t.tbi0, t.tbi1, t.a1, t.as16) == (
        ips, epd0, epd1, tbi0, tbi1, a1, as16)


def test_ttbr_fields() -> None:
    ttbr = make_ttbr(0x4123_4000, asid=0xBEEF, cnp=True)
    assert ttbr == 0xBEEF_0000_4123_4001
    assert decode_ttbr(ttbr) == decode_ttbr(0xBEEF_0000_4123_4001)
    d = decode_ttbr(ttbr)
    assert (d.baddr, d.asid, d.cnp) == (0x4123_4000, 0xBEEF, True)
    with pytest.raises(ConfigError):
        make_ttbr(0x4123_4001)
    with pytest.raises(ConfigError):
        make_ttbr(0x4000_0000, asid=0x10000)
