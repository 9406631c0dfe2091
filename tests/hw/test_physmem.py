"""PhysMem: bank layout, pa -> node, accesses at and across bank edges, the
memblock-style allocator, lazy host memory, and Unicorn seeing the same bytes."""

from __future__ import annotations

import ctypes
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.errors import ConfigError
from emu.hw.physmem import PA_LIMIT, PHYS_OFFSET, PhysAddrError, PhysMem
from emu.hw.topology import MIB, Topology

KIB = 1024


@pytest.fixture
def mem():
    with PhysMem(3, 64 * KIB) as physmem:
        yield physmem


@pytest.mark.parametrize(("nodes", "bank_size"), [(1, 64 * KIB), (3, 64 * KIB), (4, 16 * MIB),
                                                  (5, 192 * KIB)])
def test_banks_are_contiguous_from_phys_offset(nodes: int, bank_size: int) -> None:
    with PhysMem(nodes, bank_size) as mem:
        assert mem.base == PHYS_OFFSET == 0x4000_0000
        assert mem.end == PHYS_OFFSET + nodes * bank_size
        for n, bank in enumerate(mem.banks):
            assert (bank.node, bank.base, bank.size) == (n, PHYS_OFFSET + n * bank_size, bank_size)
            assert bank.end == bank.base + bank.size
            assert bank.host_address == ctypes.addressof(ctypes.c_char.from_buffer(bank.buffer))
            assert mem.bank(n) is bank


@pytest.mark.parametrize(("nodes", "bank_size"), [(1, 64 * KIB), (3, 64 * KIB), (5, 192 * KIB)])
def test_node_of_on_every_boundary(nodes: int, bank_size: int) -> None:
    with PhysMem(nodes, bank_size) as mem:
        for bad in (0, mem.base - 1, mem.end, mem.end + 1, -5):
            with pytest.raises(PhysAddrError):
                mem.node_of(bad)
            assert not mem.is_ram(bad)
        for bank in mem.banks:
            for pa in (bank.base, bank.base + 1, bank.end - 8, bank.end - 1):
                assert mem.node_of(pa) == bank.node
                assert mem.is_ram(pa)


def test_phys_addr_error_is_a_lookup_error_naming_the_address(mem: PhysMem) -> None:
    assert issubclass(PhysAddrError, LookupError)
    with pytest.raises(LookupError, match=f"{mem.end:#x} is not RAM"):
        mem.node_of(mem.end)


def test_from_topology() -> None:
    topo = Topology.uniform("t", 2, 1, 16 * MIB)
    with PhysMem.from_topology(topo) as mem:
        assert mem.nodes == 2 and mem.bank_size == 16 * MIB


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 64 * KIB), "nodes must be a positive integer"),
        ((2, 0), "bank size must be a positive multiple of 64 KiB"),
        ((2, 64 * KIB + 4096), "multiple of 64 KiB"),
        ((2, 64 * KIB, 0x1000), "not 64 KiB aligned"),
        ((2, 1 << 47, PHYS_OFFSET), "beyond the 48-bit physical address space"),
    ],
)
def test_bad_geometry_is_a_config_error(args, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PhysMem(*args)


def test_read_write_within_and_across_banks(mem: PhysMem) -> None:
    edge = mem.banks[1].base
    mem.write(edge - 3, b"abcdefgh")  # 3 bytes in node 0, 5 in node 1
    assert mem.read(edge - 3, 8) == b"abcdefgh"
    assert bytes(mem.banks[0].buffer[-3:]) == b"abc"
    assert bytes(mem.banks[1].buffer[:5]) == b"defgh"
    span = bytes(range(256)) * (64 * KIB // 256) + b"tail"
    mem.write(mem.banks[0].base + 10, span)  # runs over the whole of node 1 into node 2
    assert mem.read(mem.banks[0].base + 10, len(span)) == span
    mem.write(mem.end - 4, bytearray(b"last"))
    assert mem.read(mem.end - 4, 4) == b"last"
    assert mem.read(mem.base, 0) == b""


@pytest.mark.parametrize("where", ["below", "above", "straddle_start", "straddle_end"])
def test_accesses_outside_ram_raise(mem: PhysMem, where: str) -> None:
    pa, n = {"below": (mem.base - 16, 8), "above": (mem.end, 1),
             "straddle_start": (mem.base - 1, 2), "straddle_end": (mem.end - 1, 2)}[where]
    with pytest.raises(PhysAddrError):
        mem.read(pa, n)
    with pytest.raises(PhysAddrError):
        mem.write(pa, b"x" * n)
    with pytest.raises(PhysAddrError):
        mem.view(pa, n)
    with pytest.raises(PhysAddrError):
        mem.zero(pa, n)


def test_view_is_writable_and_stays_within_one_bank(mem: PhysMem) -> None:
    bank = mem.banks[2]
    view = mem.view(bank.base + 16, 8)
    view[:] = b"12345678"
    assert mem.read(bank.base + 16, 8) == b"12345678"
    assert len(mem.view(bank.end - 8, 8)) == 8
    with pytest.raises(PhysAddrError, match="crosses the end of node 1's bank"):
        mem.view(mem.banks[2].base - 4, 8)


@pytest.mark.parametrize("offset", [0, 8, 3, 4, -8, -4, -1])
def test_u64_and_u32_at_bank_edges(mem: PhysMem, offset: int) -> None:
    # offset is relative to the start of node 1's bank: negative ones begin in node 0.
    pa = mem.banks[1].base + offset
    mem.write_u64(pa, 0x0123_4567_89AB_CDEF)
    assert mem.read(pa, 8) == struct.pack("<Q", 0x0123_4567_89AB_CDEF)
    assert mem.read_u64(pa) == 0x0123_4567_89AB_CDEF
    assert mem.u64_reader()(pa) == 0x0123_4567_89AB_CDEF
    mem.write_u32(pa, 0xD503_201F)
    assert mem.read(pa, 4) == struct.pack("<I", 0xD503_201F)
    assert mem.read_u32(pa) == 0xD503_201F


def test_u64_and_u32_at_the_ends_of_ram(mem: PhysMem) -> None:
    mem.write_u64(mem.base, 1)
    mem.write_u64(mem.end - 8, 2)
    assert mem.read_u64(mem.base) == 1 and mem.read_u64(mem.end - 8) == 2
    mem.write_u32(mem.end - 4, 3)
    assert mem.read_u32(mem.end - 4) == 3
    reader = mem.u64_reader()
    for pa in (mem.end - 7, mem.end, mem.base - 8, mem.base - 1):
        for op in (mem.read_u64, reader, lambda a: mem.write_u64(a, 0)):
            with pytest.raises(PhysAddrError):
                op(pa)
    for pa in (mem.end - 3, mem.base - 4):
        with pytest.raises(PhysAddrError):
            mem.read_u32(pa)
        with pytest.raises(PhysAddrError):
            mem.write_u32(pa, 0)


def test_u64_reader_works_for_bank_sizes_that_are_not_powers_of_two() -> None:
    with PhysMem(3, 192 * KIB) as mem:
        pa = mem.banks[2].base + 4096
        mem.write_u64(pa, 77)
        assert mem.u64_reader()(pa) == 77


ops = st.lists(
    st.tuples(st.integers(-16, 3 * 64 * KIB + 16), st.binary(min_size=0, max_size=300)),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(ops=ops, probes=st.lists(st.integers(-16, 3 * 64 * KIB + 16), max_size=20))
def test_matches_a_flat_bytearray_model(ops, probes) -> None:
    with PhysMem(3, 64 * KIB) as mem:
        model = bytearray(3 * 64 * KIB)
        for offset, data in ops:
            pa = mem.base + offset
            if 0 <= offset <= len(model) - len(data):
                mem.write(pa, data)
                model[offset:offset + len(data)] = data
            else:
                with pytest.raises(PhysAddrError):
                    mem.write(pa, data)
        for offset in probes:
            pa = mem.base + offset
            if 0 <= offset <= len(model) - 8:
                assert mem.read_u64(pa) == int.from_bytes(model[offset:offset + 8], "little")
                assert mem.read(pa, 8) == model[offset:offset + 8]
            else:
                with pytest.raises(PhysAddrError):
                    mem.read_u64(pa)
        assert mem.read(mem.base, len(model)) == model


def test_allocator_is_top_down_aligned_zeroed_and_node_local(mem: PhysMem) -> None:
    bank = mem.banks[1]
    mem.write(bank.base, b"\xff" * bank.size)  # garbage the allocator must clear
    first = mem.memblock_alloc_node(100, 4096, 1)
    assert first == bank.end - 4096  # highest 4 KiB-aligned block that fits 100 bytes
    assert mem.read(first, 100) == bytes(100)
    second = mem.memblock_alloc_node(4096, 4096, 1)
    assert second == first - 4096
    # Like memblock, the slack left above the 100-byte block is still free.
    third = mem.memblock_alloc_node(24, 8, 1)
    assert third == bank.end - 24
    fourth = mem.memblock_alloc_node(8192, 8, 1)
    assert fourth == second - 8192
    for pa in (first, second, third, fourth):
        assert mem.node_of(pa) == 1
    assert mem.allocated_bytes(1) == 100 + 4096 + 24 + 8192
    assert mem.allocated_bytes() == mem.allocated_bytes(1)
    assert mem.allocated_bytes(0) == 0
    assert mem.used_bytes(1) == mem.allocated_bytes(1)
    assert mem.free_bytes(1) == bank.size - mem.used_bytes(1)


def test_allocator_skips_reserved_ranges_and_reserve_may_span_banks(mem: PhysMem) -> None:
    bank0, bank1 = mem.banks[0], mem.banks[1]
    mem.reserve(bank0.end - 8 * KIB, 16 * KIB)  # 8 KiB at the top of node 0, 8 KiB at node 1's base
    assert mem.used_bytes(0) == 8 * KIB and mem.used_bytes(1) == 8 * KIB
    mem.reserve(bank0.end - 12 * KIB, 6 * KIB)  # overlaps the first reservation: merged
    assert mem.used_bytes(0) == 12 * KIB
    pa = mem.memblock_alloc_node(4 * KIB, 4 * KIB, 0)
    assert pa == bank0.end - 16 * KIB
    # Node 1: fill everything above the reserved base, then the next request cannot fit.
    top = mem.memblock_alloc_node(bank1.size - 8 * KIB, 4 * KIB, 1)
    assert top == bank1.base + 8 * KIB
    with pytest.raises(ConfigError, match="node 1 has no free 0x10-byte block"):
        mem.memblock_alloc_exact_nid(16, 16, 1)
    # memblock_alloc_node() (memblock_alloc_try_nid()) then takes the highest
    # free block of any node, as Linux does for a full node.
    last = mem.banks[-1]
    assert mem.memblock_alloc_node(16, 16, 1) == last.end - 16


def test_allocator_finds_a_hole_below_the_top(mem: PhysMem) -> None:
    bank = mem.banks[2]
    mem.reserve(bank.end - 4 * KIB, 4 * KIB)
    mem.reserve(bank.end - 40 * KIB, 32 * KIB)  # leaves a 4 KiB hole at end-8K
    assert mem.memblock_alloc_node(4 * KIB, 4 * KIB, 2) == bank.end - 8 * KIB
    assert mem.memblock_alloc_node(8 * KIB, 8 * KIB, 2) == bank.end - 48 * KIB


@pytest.mark.parametrize(
    ("size", "align", "node", "message"),
    [(0, 8, 0, "size must be positive"), (8, 3, 0, "align 3 is not a power of two"),
     (8, 0, 0, "not a power of two"), (8, 8, 3, "node 3 does not exist"),
     (128 * KIB, 8, 0, "(node 0 has no free|neither node 0 nor any other node has a free)")],
)
@pytest.mark.parametrize("alloc", ["memblock_alloc_node", "memblock_alloc_exact_nid"])
def test_allocator_errors(mem: PhysMem, size: int, align: int, node: int, message: str,
                          alloc: str) -> None:
    with pytest.raises(ConfigError, match=message):
        getattr(mem, alloc)(size, align, node)


def _highest_fit(mem: PhysMem, taken: list[tuple[int, int]], size: int, align: int,
                 nodes: range) -> int | None:
    """The reference answer: the highest aligned block of ``size`` free bytes
    inside one bank of ``nodes``, by brute force over every aligned address."""
    best = None
    for node in nodes:
        bank = mem.banks[node]
        pa = (bank.end - size) & ~(align - 1)
        while pa >= bank.base:
            if all(pa + size <= start or end <= pa for start, end in taken):
                best = pa if best is None else max(best, pa)
                break
            pa -= align
    return best


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["node", "exact", "any", "reserve"]),
                          st.integers(0, 2), st.integers(1, 24 * KIB),
                          st.sampled_from([8, 64, 4096, 16384]), st.integers(0, 64 * KIB - 1)),
                max_size=25))
def test_every_allocator_takes_the_highest_free_block_memblock_would(steps) -> None:
    """memblock_alloc_exact_nid: the node's highest fit or an error;
    memblock_alloc_node: that, else the highest fit of any node;
    memblock_phys_alloc: the highest fit of all RAM."""
    with PhysMem(3, 64 * KIB) as mem:
        taken: list[tuple[int, int]] = []
        for kind, node, size, align, offset in steps:
            bank = mem.banks[node]
            if kind == "reserve":
                length = min(size, bank.end - (bank.base + offset))
                mem.reserve(bank.base + offset, length)
                taken.append((bank.base + offset, bank.base + offset + length))
                continue
            own = _highest_fit(mem, taken, size, align, range(node, node + 1))
            anywhere = _highest_fit(mem, taken, size, align, range(3))
            expected = {"exact": own, "node": own if own is not None else anywhere,
                        "any": anywhere}[kind]
            try:
                if kind == "any":
                    pa = mem.memblock_phys_alloc(size, align)
                elif kind == "node":
                    pa = mem.memblock_alloc_node(size, align, node)
                else:
                    pa = mem.memblock_alloc_exact_nid(size, align, node)
            except ConfigError:
                pa = None
            assert pa == expected
            if pa is not None:
                assert mem.read(pa, size) == bytes(size)
                mem.write(pa, b"\xaa" * size)
                taken.append((pa, pa + size))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["alloc", "reserve"]), st.integers(0, 2),
                          st.integers(1, 20 * KIB), st.sampled_from([1, 8, 64, 4096, 16384]),
                          st.integers(0, 64 * KIB - 1)), max_size=25))
def test_allocations_never_overlap_and_stay_on_their_node(steps) -> None:
    with PhysMem(3, 64 * KIB) as mem:
        taken: list[tuple[int, int]] = []
        allocated = 0
        for kind, node, size, align, offset in steps:
            bank = mem.banks[node]
            if kind == "reserve":
                length = min(size, bank.end - (bank.base + offset))
                mem.reserve(bank.base + offset, length)
                taken.append((bank.base + offset, bank.base + offset + length))
                continue
            try:
                pa = mem.memblock_alloc_exact_nid(size, align, node)
            except ConfigError:
                continue
            allocated += size
            assert pa % align == 0
            assert bank.base <= pa and pa + size <= bank.end
            for start, end in taken:
                assert pa + size <= start or end <= pa
            taken.append((pa, pa + size))
        assert mem.allocated_bytes() == allocated


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_64_nodes_of_ram_cost_nothing_until_touched() -> None:
    before = _rss_bytes()
    with PhysMem(64, 64 * MIB) as mem:
        assert mem.end - mem.base == 4096 * MIB
        assert _rss_bytes() - before < 32 * MIB
        pa = mem.memblock_alloc_node(64 * KIB, 4096, 63)
        mem.write_u64(pa, 1)
        assert _rss_bytes() - before < 32 * MIB


def test_unicorn_maps_the_bank_buffers_directly() -> None:
    unicorn = pytest.importorskip("unicorn")
    from unicorn import arm64_const as a64

    with PhysMem(2, 64 * KIB) as mem:
        uc = unicorn.Uc(unicorn.UC_ARCH_ARM64, unicorn.UC_MODE_ARM)
        for bank in mem.banks:
            uc.mem_map_ptr(bank.base, bank.size, unicorn.UC_PROT_ALL, bank.host_address)
        code = mem.banks[0].base + 0x100
        target = mem.banks[1].base + 0x800
        mem.write_u32(code, 0xF9400002)      # ldr x2, [x0]
        mem.write_u32(code + 4, 0xF9000001)  # str x1, [x0]
        mem.write_u64(target, 0x5555)
        uc.reg_write(a64.UC_ARM64_REG_X0, target)
        uc.reg_write(a64.UC_ARM64_REG_X1, 0xFEED_FACE_CAFE_BEEF)
        uc.emu_start(code, code + 8)
        assert uc.reg_read(a64.UC_ARM64_REG_X2) == 0x5555  # host store seen by the guest
        assert mem.read_u64(target) == 0xFEED_FACE_CAFE_BEEF  # guest store seen by the host
        assert bytes(uc.mem_read(target, 8)) == mem.read(target, 8)
        del uc


def test_pa_limit_is_48_bits() -> None:
    assert PA_LIMIT == 1 << 48
