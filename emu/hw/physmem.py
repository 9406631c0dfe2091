"""Guest physical memory: one RAM bank per NUMA node, each a host buffer that
Unicorn maps directly, with pa -> node lookup, fast descriptor-sized accesses
for the MMU, and a node-local boot allocator in the manner of memblock.

Physical layout (contiguous, no holes):
    node n's bank = [PHYS_OFFSET + n * bank_size, PHYS_OFFSET + (n + 1) * bank_size)
PHYS_OFFSET is 1 GiB (0x4000_0000), where RAM starts on QEMU's arm64 ``virt``
board, so the lowest gigabyte stays free for devices. Because the banks are
contiguous and equal, the node of a physical address is plain arithmetic.

Each bank is an anonymous private mmap, so the host commits a page only when
it is first touched: 64 nodes x 64 MiB cost nothing until used. The ctypes
address of each buffer is what ``uc.mem_map_ptr(base, size, perms, address)``
takes; it stays valid while this PhysMem is open, so keep the PhysMem alive
for as long as any Unicorn instance maps it, and close it only afterwards.

The allocator mirrors memblock on a machine with one memory region per node:
allocations are top-down (memblock's default), zeroed, and never overlap
reserved ranges; reserve() is memblock_reserve() (the kernel image).
memblock_alloc_node() is Linux's (memblock_alloc_try_nid()): the node first,
then, when it is full, the highest free block of any node.
memblock_phys_alloc() takes no node at all, as arm64's early_pgtable_alloc()
does: the highest free block of RAM, which is the last node's until it fills
(arm64 leaves memblock's limit at MEMBLOCK_ALLOC_ANYWHERE since v4.6,
"arm64: mm: allocate pagetables anywhere").  memblock_alloc_exact_nid()
never leaves the node.  Running out of RAM is a ConfigError.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import mmap
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from emu.errors import ConfigError
from emu.hw.topology import Topology

PHYS_OFFSET = 0x4000_0000
PA_LIMIT = 1 << 48
BANK_ALIGN = 64 * 1024

_LE_HOST = sys.byteorder == "little"
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class PhysAddrError(LookupError):
    """A physical address, or part of a range, that is not guest RAM."""


@dataclass(frozen=True)
class RamBank:
    """One node's RAM: guest physical range [base, base + size) backed by ``buffer``."""

    node: int
    base: int
    size: int
    host_address: int
    buffer: mmap.mmap = field(repr=False, compare=False)

    @property
    def end(self) -> int:
        return self.base + self.size


class PhysMem:
    """Per-node RAM banks at contiguous physical addresses."""

    def __init__(self, nodes: int, bank_size: int, phys_offset: int = PHYS_OFFSET) -> None:
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
            raise ConfigError(f"physmem: nodes must be a positive integer, got {nodes!r}")
        if isinstance(bank_size, bool) or not isinstance(bank_size, int) or bank_size <= 0 \
                or bank_size % BANK_ALIGN:
            raise ConfigError(
                f"physmem: bank size must be a positive multiple of 64 KiB, got {bank_size!r}"
            )
        if phys_offset < 0 or phys_offset % BANK_ALIGN:
            raise ConfigError(f"physmem: PHYS_OFFSET {phys_offset:#x} is not 64 KiB aligned")
        end = phys_offset + nodes * bank_size
        if end > PA_LIMIT:
            raise ConfigError(
                f"physmem: RAM would end at {end:#x}, beyond the 48-bit physical address space"
            )
        self._base = phys_offset
        self._end = end
        self._nodes = nodes
        self._bank_size = bank_size
        self._anchors: list[ctypes.c_char] = []
        self._maps: list[mmap.mmap] = []
        banks = []
        for node in range(nodes):
            mm = _anonymous_buffer(node, bank_size)
            anchor = ctypes.c_char.from_buffer(mm)
            self._anchors.append(anchor)
            self._maps.append(mm)
            banks.append(RamBank(node, phys_offset + node * bank_size, bank_size,
                                 ctypes.addressof(anchor), mm))
        self.banks: tuple[RamBank, ...] = tuple(banks)
        self._views = [memoryview(mm) for mm in self._maps]
        # Native-order casts are little-endian here, the guest's order; on a
        # big-endian host the accessors fall back to struct.
        self._q = [v.cast("Q") for v in self._views] if _LE_HOST else None
        self._w = [v.cast("I") for v in self._views] if _LE_HOST else None
        self._busy: list[list[tuple[int, int]]] = [[] for _ in range(nodes)]
        self._allocated = [0] * nodes
        # The highest node that may still hold a block (memblock_phys_alloc's start)
        self._top_free = nodes - 1
        self._closed = False

    @classmethod
    def from_topology(cls, topology: Topology, phys_offset: int = PHYS_OFFSET) -> PhysMem:
        return cls(topology.nodes, topology.ram_bytes, phys_offset)

    # -- geometry ---------------------------------------------------------

    @property
    def base(self) -> int:
        return self._base

    @property
    def end(self) -> int:
        """One past the last RAM byte."""
        return self._end

    @property
    def nodes(self) -> int:
        return self._nodes

    @property
    def bank_size(self) -> int:
        return self._bank_size

    def bank(self, node: int) -> RamBank:
        if not 0 <= node < self._nodes:
            raise ConfigError(f"physmem: node {node} does not exist (0-{self._nodes - 1})")
        return self.banks[node]

    def node_of(self, pa: int) -> int:
        """The node whose RAM holds ``pa``; PhysAddrError if ``pa`` is not RAM."""
        off = pa - self._base
        if 0 <= off < self._end - self._base:
            return off // self._bank_size
        raise PhysAddrError(self._not_ram(pa))

    def is_ram(self, pa: int) -> bool:
        return self._base <= pa < self._end

    def host_address_of(self, pa: int) -> int:
        """Host pointer to the byte at ``pa`` (for ctypes or Unicorn)."""
        node = self.node_of(pa)
        return self.banks[node].host_address + (pa - self.banks[node].base)

    # -- access -----------------------------------------------------------

    def read(self, pa: int, n: int) -> bytes:
        """``n`` bytes from ``pa``; the range may cross from one bank into the next."""
        off = pa - self._base
        size = self._bank_size
        if n >= 0 and 0 <= off <= self._end - self._base - n:
            node, local = divmod(off, size)
            if local + n <= size:
                return self._maps[node][local:local + n]
            return b"".join(bytes(v) for v in self._split_views(pa, n))
        raise PhysAddrError(self._not_ram_range(pa, n))

    def write(self, pa: int, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` at ``pa``; the range may cross from one bank into the next."""
        n = len(data)
        off = pa - self._base
        size = self._bank_size
        if 0 <= off <= self._end - self._base - n:
            node, local = divmod(off, size)
            if local + n <= size:
                self._maps[node][local:local + n] = data
                return
            src = memoryview(data).cast("B")
            done = 0
            for view in self._split_views(pa, n):
                view[:] = src[done:done + len(view)]
                done += len(view)
            return
        raise PhysAddrError(self._not_ram_range(pa, n))

    def view(self, pa: int, n: int) -> memoryview:
        """A writable view of ``n`` bytes at ``pa``, which must lie within one bank."""
        off = pa - self._base
        if n >= 0 and 0 <= off <= self._end - self._base - n:
            node, local = divmod(off, self._bank_size)
            if local + n <= self._bank_size:
                return self._views[node][local:local + n]
            raise PhysAddrError(
                f"physical range {pa:#x}+{n:#x} crosses the end of node {node}'s bank"
            )
        raise PhysAddrError(self._not_ram_range(pa, n))

    def read_u64(self, pa: int) -> int:
        """Little-endian 64-bit load (the table walker's hot path)."""
        off = pa - self._base
        if 0 <= off <= self._end - self._base - 8:
            q = self._q
            # Banks are 64 KiB multiples, so off and the in-bank offset share alignment.
            if q is not None and not off & 7:
                return q[off // self._bank_size][(off % self._bank_size) >> 3]
            node, local = divmod(off, self._bank_size)
            if local + 8 <= self._bank_size:
                return _U64.unpack_from(self._maps[node], local)[0]
            return _U64.unpack(self.read(pa, 8))[0]
        raise PhysAddrError(self._not_ram_range(pa, 8))

    def write_u64(self, pa: int, value: int) -> None:
        """Little-endian 64-bit store."""
        off = pa - self._base
        if 0 <= off <= self._end - self._base - 8:
            q = self._q
            if q is not None and not off & 7:
                q[off // self._bank_size][(off % self._bank_size) >> 3] = value
                return
            node, local = divmod(off, self._bank_size)
            if local + 8 <= self._bank_size:
                _U64.pack_into(self._maps[node], local, value)
                return
            self.write(pa, _U64.pack(value))
            return
        raise PhysAddrError(self._not_ram_range(pa, 8))

    def read_u32(self, pa: int) -> int:
        """Little-endian 32-bit load (one A64 instruction)."""
        off = pa - self._base
        if 0 <= off <= self._end - self._base - 4:
            node, local = divmod(off, self._bank_size)
            w = self._w
            if w is not None and not local & 3:
                return w[node][local >> 2]
            if local + 4 <= self._bank_size:
                return _U32.unpack_from(self._maps[node], local)[0]
            return _U32.unpack(self.read(pa, 4))[0]
        raise PhysAddrError(self._not_ram_range(pa, 4))

    def write_u32(self, pa: int, value: int) -> None:
        """Little-endian 32-bit store."""
        off = pa - self._base
        if 0 <= off <= self._end - self._base - 4:
            node, local = divmod(off, self._bank_size)
            w = self._w
            if w is not None and not local & 3:
                w[node][local >> 2] = value
                return
            if local + 4 <= self._bank_size:
                _U32.pack_into(self._maps[node], local, value)
                return
            self.write(pa, _U32.pack(value))
            return
        raise PhysAddrError(self._not_ram_range(pa, 4))

    def u64_reader(self) -> Callable[[int], int]:
        """``read_u64`` as a closure over this layout, for a table walker's inner loop.

        Same results and errors as read_u64, without the attribute lookups.
        """
        base, size, last, q, slow = self._base, self._bank_size, self._end - self._base - 8, \
            self._q, self.read_u64
        if q is None or size & (size - 1):
            return slow
        shift, mask = size.bit_length() - 1, size - 1

        def read_u64(pa: int) -> int:
            off = pa - base
            if 0 <= off <= last and not off & 7:
                return q[off >> shift][(off & mask) >> 3]
            return slow(pa)

        return read_u64

    def zero(self, pa: int, n: int) -> None:
        """Clear ``n`` bytes at ``pa`` without building a buffer of zeros."""
        for bank, local, length in self._split(pa, n):
            ctypes.memset(bank.host_address + local, 0, length)

    # -- boot allocator (memblock) ----------------------------------------

    def memblock_alloc_exact_nid(self, size: int, align: int, node: int) -> int:
        """Zeroed, ``align``-aligned ``size`` bytes of ``node``'s RAM; returns the PA.

        Top-down like memblock: the highest free aligned block of the node.
        """
        self._check_request(size, align)
        self.bank(node)
        pa = self._find_in_node(size, align, node)
        if pa is None:
            raise ConfigError(
                f"memblock_alloc_node: node {node} has no free {size:#x}-byte block aligned to "
                f"{align:#x} ({self.free_bytes(node):#x} bytes free in total)"
            )
        return self._take(node, pa, size)

    def memblock_alloc_node(self, size: int, align: int, node: int) -> int:
        """memblock_alloc_node(): ``node``'s RAM, else the highest free block of
        any node (memblock_alloc_try_nid() retries with NUMA_NO_NODE).  The
        caller learns where it landed from node_of()."""
        self._check_request(size, align)
        self.bank(node)
        pa = self._find_in_node(size, align, node)
        if pa is not None:
            return self._take(node, pa, size)
        return self._alloc_anywhere(size, align, f"memblock_alloc_node: neither node {node} "
                                                 "nor any other node has")

    def memblock_phys_alloc(self, size: int, align: int) -> int:
        """memblock_phys_alloc_range(size, align, 0, MEMBLOCK_ALLOC_ANYWHERE):
        the highest free aligned block of all RAM, whatever its node."""
        self._check_request(size, align)
        return self._alloc_anywhere(size, align, "memblock_phys_alloc: no node has")

    def _alloc_anywhere(self, size: int, align: int, where: str) -> int:
        # Full nodes at the top stay full (nothing is freed), so the search
        # starts below them: O(1) per allocation while one node fills.
        for node in range(self._top_free, -1, -1):
            pa = self._find_in_node(size, align, node)
            if pa is not None:
                return self._take(node, pa, size)
            if not self.free_bytes(node):
                self._top_free = node - 1
        raise ConfigError(f"{where} a free {size:#x}-byte block aligned to {align:#x} "
                          f"({self._bank_size >> 20} MiB of RAM per node)")

    @staticmethod
    def _check_request(size: int, align: int) -> None:
        if size <= 0:
            raise ConfigError(f"memblock_alloc_node: size must be positive, got {size}")
        if align <= 0 or align & (align - 1):
            raise ConfigError(f"memblock_alloc_node: align {align} is not a power of two")

    def _find_in_node(self, size: int, align: int, node: int) -> int | None:
        bank = self.banks[node]
        gap_hi = bank.end
        for start, end in reversed(self._busy[node]):
            pa = self._fit(end, gap_hi, size, align)
            if pa is not None:
                return pa
            gap_hi = start
        return self._fit(bank.base, gap_hi, size, align)

    def _take(self, node: int, pa: int, size: int) -> int:
        self._mark_busy(node, pa, pa + size)
        self._allocated[node] += size
        self.zero(pa, size)
        return pa

    def reserve(self, pa: int, size: int) -> None:
        """Keep [pa, pa + size) away from the allocator (memblock_reserve()).

        Overlapping an earlier reservation or allocation is allowed, as in memblock.
        """
        for bank, local, length in self._split(pa, size):
            self._mark_busy(bank.node, bank.base + local, bank.base + local + length)

    def allocated_bytes(self, node: int | None = None) -> int:
        """Bytes handed out by memblock_alloc_node (one node or all)."""
        if node is None:
            return sum(self._allocated)
        self.bank(node)
        return self._allocated[node]

    def used_bytes(self, node: int | None = None) -> int:
        """Bytes covered by allocations and reservations (one node or all)."""
        nodes = range(self._nodes) if node is None else [self.bank(node).node]
        return sum(end - start for n in nodes for start, end in self._busy[n])

    def free_bytes(self, node: int) -> int:
        return self.bank(node).size - self.used_bytes(node)

    # -- lifetime ---------------------------------------------------------

    def close(self) -> None:
        """Unmap every bank. Every Unicorn instance mapping them must be gone first."""
        if self._closed:
            return
        self._closed = True
        for views in (self._q or [], self._w or [], self._views):
            for v in views:
                v.release()
        self._anchors.clear()
        for mm in self._maps:
            # A caller may still hold a view(); the mapping then goes with it.
            with contextlib.suppress(BufferError):
                mm.close()

    def __enter__(self) -> PhysMem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ----------------------------------------------------------

    @staticmethod
    def _fit(lo: int, hi: int, size: int, align: int) -> int | None:
        pa = (hi - size) & ~(align - 1)
        return pa if pa >= lo and hi - size >= lo else None

    def _mark_busy(self, node: int, start: int, end: int) -> None:
        busy = self._busy[node]
        i = bisect.bisect_left(busy, (start, start))
        if i > 0 and busy[i - 1][1] >= start:
            i -= 1
        j = i
        while j < len(busy) and busy[j][0] <= end:
            start = min(start, busy[j][0])
            end = max(end, busy[j][1])
            j += 1
        busy[i:j] = [(start, end)]

    def _split(self, pa: int, n: int) -> Iterator[tuple[RamBank, int, int]]:
        if n < 0 or pa < self._base or pa + n > self._end:
            raise PhysAddrError(self._not_ram_range(pa, n))
        while n > 0:
            node, local = divmod(pa - self._base, self._bank_size)
            length = min(n, self._bank_size - local)
            yield self.banks[node], local, length
            pa += length
            n -= length

    def _split_views(self, pa: int, n: int) -> Iterator[memoryview]:
        for bank, local, length in self._split(pa, n):
            yield self._views[bank.node][local:local + length]

    def _not_ram(self, pa: int) -> str:
        return f"physical address {pa:#x} is not RAM (RAM is {self._base:#x}-{self._end - 1:#x})"

    def _not_ram_range(self, pa: int, n: int) -> str:
        return (
            f"physical range {pa:#x}+{n:#x} is not entirely RAM "
            f"(RAM is {self._base:#x}-{self._end - 1:#x})"
        )


def _anonymous_buffer(node: int, size: int) -> mmap.mmap:
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
    try:
        return mmap.mmap(-1, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    except (OSError, ValueError, OverflowError) as err:
        raise ConfigError(
            f"physmem: cannot reserve {size >> 20} MiB of host memory for node {node}: {err}"
        ) from None
