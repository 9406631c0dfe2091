"""Exact instruction-fetch (and optional data-access) counts per CPU and node.

Owns the state shared with the C hooks of ``emu/hw/_accel.c``: per CPU and per
memory node, how many instructions were fetched from kernel text
(``[_stext, _etext)``) and from anywhere else, and, when the cost model asks
for it, how many data reads and writes went to each node.

The TLB-fill hook (``emu/hw/mmu.py``) tells this module, for every 4 KiB
virtual page it maps, which node and kind of memory it is, and whether the
translation came from a TLB entry a CPU of another node filled (CnP sharing,
emu/hw/tlb.py); the block hook then charges each translated block's
instruction count to that page's slot.  Such remote-filled pages have slots
of their own (the second half of each CPU's row), so they cost the C hook
nothing and are counted apart.
Counts are exact: a block cut short by a fault or by the end of a quantum is
corrected in ``settle``.  Without the compiled extension a Python block hook
does the same job, about twenty times slower.

Data accesses are counted by a C instruction hook that decodes loads and
stores (``emu/hw/ldst.h``) and charges each access, through the same page
table, once its instruction has retired; it also keeps each CPU's exclusive
monitor, which decides whether a store-exclusive touches memory.  The Python
fallback hooks memory instead.
"""

from __future__ import annotations

import ctypes
import itertools
import mmap
import operator
import os
import struct
from dataclasses import dataclass

from unicorn import (
    UC_HOOK_BLOCK,
    UC_HOOK_CODE,
    UC_HOOK_INTR,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_WRITE,
    Uc,
    arm64_const,
)

from emu.jsonfmt import sparse_by_node

KIND_KERNEL_TEXT = 0
KIND_OTHER = 1
KINDS = 2
NO_SLOT = 0xFFFF_FFFF
QEMU_PAGE_SHIFT = 12  # Unicorn's TLB works on 4 KiB pages whatever the granule
_HASH_MULT = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1

_u64p = ctypes.POINTER(ctypes.c_uint64)
_u32p = ctypes.POINTER(ctypes.c_uint32)


class _TcacheEntry(ctypes.Structure):  # acct_tcache_t
    _fields_ = [("key", ctypes.c_uint64), ("pa_page", ctypes.c_uint64), ("node", ctypes.c_int64)]


class _Pending(ctypes.Structure):  # acct_pending_t
    _fields_ = [
        ("pc", ctypes.c_uint64),
        ("address", ctypes.c_uint64),
        ("kind", ctypes.c_uint32),
        ("count", ctypes.c_uint32),
        ("stride", ctypes.c_uint32),
        ("write", ctypes.c_uint32),
        ("matched", ctypes.c_uint32),
        ("rs", ctypes.c_uint32),
    ]


class _AcctState(ctypes.Structure):
    # Must match acct_t in accel.h field for field.
    _fields_ = [
        ("counters", _u64p),
        ("keys", _u64p),
        ("slots", _u32p),
        ("mask", ctypes.c_uint64),
        ("last_block", ctypes.c_uint64),
        ("last_size", ctypes.c_uint32),
        ("last_slot", ctypes.c_uint32),
        ("unknown", ctypes.c_uint64),
        ("data_counters", _u64p),
        ("ram_base", ctypes.c_uint64),
        ("bank_size", ctypes.c_uint64),
        ("n_nodes", ctypes.c_uint64),
        ("data_unknown", ctypes.c_uint64),
        ("cached_key", ctypes.c_uint64),
        ("cached_slot", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("pas", _u64p),
        ("cached_pa", ctypes.c_uint64),
        ("reg_read", ctypes.c_void_p),
        ("reg_write", ctypes.c_void_p),
        ("emu_stop", ctypes.c_void_p),
        ("bank_host", _u64p),
        ("regid", ctypes.c_int32 * 10),
        ("pending_intno", ctypes.c_uint32),
        ("svc_entries", ctypes.c_uint64),
        ("recent", _u64p),
        ("recent_pos", _u64p),
        ("insn_count", ctypes.c_uint64),
        ("insn_budget", ctypes.c_uint64),
        ("insn_unknown", ctypes.c_uint64),
        ("monitor", _u64p),
        ("tcache", ctypes.POINTER(_TcacheEntry)),
        ("tcache_mask", ctypes.c_uint64),
        ("pending", _Pending),
        ("code_key", ctypes.c_uint64),
        ("code_host", ctypes.c_void_p),
        ("xregid", ctypes.c_int32 * 32),
        ("decoded", ctypes.c_void_p),
        ("decoded_mask", ctypes.c_uint64),
        ("data_sink", ctypes.c_void_p),
        ("data_sink_user", ctypes.c_void_p),
        ("fetch_sink", ctypes.c_void_p),
        ("fetch_sink_user", ctypes.c_void_p),
    ]


RECENT_BLOCKS = 16  # ACCT_RECENT in accel.h
NO_MONITOR = (1 << 64) - 1  # ACCT_NO_MONITOR: the exclusive monitor is clear
NO_BUDGET = (1 << 64) - 1
TCACHE_BITS = 8
DECODED_BITS = 10  # acct_t.decoded: load/store words decoded once

# acct_t.xregid: x0..x30, then sp (what register number 31 means as a base)
XREGIDS = (
    *(arm64_const.UC_ARM64_REG_X0 + n for n in range(29)),
    arm64_const.UC_ARM64_REG_X29,
    arm64_const.UC_ARM64_REG_X30,
    arm64_const.UC_ARM64_REG_SP,
)


# acct_t.regid, in the order of the R_* enum in _accel.c
REGIDS = (
    arm64_const.UC_ARM64_REG_PC,
    arm64_const.UC_ARM64_REG_PSTATE,
    arm64_const.UC_ARM64_REG_SP,
    arm64_const.UC_ARM64_REG_SP_EL0,
    arm64_const.UC_ARM64_REG_SP_EL1,
    arm64_const.UC_ARM64_REG_ESR_EL1,
    arm64_const.UC_ARM64_REG_ELR_EL1,
    arm64_const.UC_ARM64_REG_VBAR_EL1,
    arm64_const.UC_ARM64_REG_CP_REG,
)


NO_ACCEL_ENV = "KTEXT_EMU_NO_ACCEL"  # set to 1 to use the Python hooks (tests, debugging)


def compiled_extension_status() -> dict[str, object]:
    """Whether the compiled hooks (emu/hw/_accel, emu/hw/_cachesim) are in use,
    and if not, why: the JSON report's ``host`` object and the CLI's notice."""
    if os.environ.get(NO_ACCEL_ENV) == "1":
        return {"compiled_extension": False,
                "reason": f"{NO_ACCEL_ENV}=1 is set: the Python hooks are in use"}
    missing = []
    for name in ("_accel", "_cachesim"):
        try:
            __import__(f"emu.hw.{name}")
        except ImportError:
            missing.append(f"emu.hw.{name}")
    if not missing:
        return {"compiled_extension": True, "reason": None}
    return {"compiled_extension": False,
            "reason": f"{' and '.join(missing)} not built (no C compiler at install, or a "
            "checkout without `python3 setup.py build_ext --inplace`): the Python hooks "
            "are in use, about 20x slower"}


def _load_accel() -> dict[str, int] | None:
    if os.environ.get(NO_ACCEL_ENV) == "1":
        return None
    try:
        from emu.hw import _accel  # type: ignore[attr-defined]
    except ImportError:
        return None
    addresses = _accel.addresses()
    if addresses["struct_size"] != ctypes.sizeof(_AcctState):
        raise RuntimeError("emu/hw/_accel.c and accounting.py disagree on acct_t")
    return addresses


@dataclass(frozen=True)
class CpuCounts:
    """One CPU's counts, indexed by memory node."""

    kernel_fetches_by_node: tuple[int, ...]
    other_fetches_by_node: tuple[int, ...]
    data_reads_by_node: tuple[int, ...]
    data_writes_by_node: tuple[int, ...]

    # Parts of the above fetched through a TLB entry a CPU of another node had
    # filled (a shared CnP entry): how a CPU ends up running another node's copy.
    remote_filled_kernel_fetches_by_node: tuple[int, ...] = ()
    remote_filled_other_fetches_by_node: tuple[int, ...] = ()

    @property
    def remote_filled_fetches(self) -> int:
        return sum(self.remote_filled_kernel_fetches_by_node) + sum(
            self.remote_filled_other_fetches_by_node
        )

    @property
    def fetches_by_node(self) -> tuple[int, ...]:
        kernel, other = self.kernel_fetches_by_node, self.other_fetches_by_node
        if len(kernel) != len(other):
            raise ValueError("CpuCounts: kernel and other fetches differ in length")
        return tuple(map(operator.add, kernel, other))  # C-speed: 1024 nodes x 4096 CPUs

    @property
    def instructions(self) -> int:
        return sum(self.kernel_fetches_by_node) + sum(self.other_fetches_by_node)

    def minus(self, earlier: CpuCounts) -> CpuCounts:
        """What was counted since ``earlier`` (a snapshot of the same CPU)."""

        def sub(now: tuple[int, ...], then: tuple[int, ...]) -> tuple[int, ...]:
            if len(now) != len(then):
                raise ValueError("CpuCounts.minus: the snapshots differ in length")
            return tuple(map(operator.sub, now, then))

        return CpuCounts(
            sub(self.kernel_fetches_by_node, earlier.kernel_fetches_by_node),
            sub(self.other_fetches_by_node, earlier.other_fetches_by_node),
            sub(self.data_reads_by_node, earlier.data_reads_by_node),
            sub(self.data_writes_by_node, earlier.data_writes_by_node),
            sub(self.remote_filled_kernel_fetches_by_node,
                earlier.remote_filled_kernel_fetches_by_node),
            sub(self.remote_filled_other_fetches_by_node,
                earlier.remote_filled_other_fetches_by_node),
        )  # fmt: skip

    def to_json(self) -> dict[str, object]:
        """Report v2: each by-node figure sparse (emu/jsonfmt.py)."""
        return {
            "instructions": self.instructions,
            "kernel_fetches_by_node": sparse_by_node(_nonzero_by_node(self.kernel_fetches_by_node)),
            "fetches_by_node": sparse_by_node(_nonzero_by_node(self.fetches_by_node)),
            "data_reads_by_node": sparse_by_node(_nonzero_by_node(self.data_reads_by_node)),
            "data_writes_by_node": sparse_by_node(_nonzero_by_node(self.data_writes_by_node)),
        }


def zeroed_array(ctype: type, count: int) -> ctypes.Array:
    """A zeroed ctypes array in private anonymous memory: pages are committed
    only when written (a ctypes array is zeroed, so committed, in full when
    made; a shared mapping, mmap's default, commits a page on a read too)."""
    buffer = mmap.mmap(-1, max(ctypes.sizeof(ctype) * count, 1),
                       flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    array_ = (ctype * count).from_buffer(buffer)
    array_._mapping = buffer  # keep the mapping as long as the array
    return array_


_ZERO_CHUNK = bytes(512)


def _nonzero_counters_python(counters: memoryview, start: int, count: int
                             ) -> list[tuple[int, int]]:  # fmt: skip
    """(index - start, value) of the nonzero uint64 counters in [start, start +
    count) of ``counters`` (their bytes), without the compiled helper: whole
    512-byte chunks of zeros are skipped at C speed."""
    raw = bytes(counters[start * 8 : (start + count) * 8])
    found = []
    for chunk in range(0, len(raw), len(_ZERO_CHUNK)):
        if raw[chunk : chunk + len(_ZERO_CHUNK)] == _ZERO_CHUNK[: len(raw) - chunk]:
            continue
        for word in range(chunk >> 3, min(chunk + len(_ZERO_CHUNK), len(raw)) >> 3):
            value = struct.unpack_from("=Q", raw, word * 8)[0]
            if value:
                found.append((word, value))
    return found


def _nonzero_by_node(values: tuple[int, ...]) -> dict[int, int]:
    """{node: count} of a dense by-node tuple's nonzero counts, the zeros
    skipped at C speed (a CPU's row has 1024 entries at the maximum)."""
    return {node: values[node] for node in itertools.compress(range(len(values)), values)}


class Accounting:
    """Counters and the page table the block hook reads."""

    def __init__(
        self,
        n_cpus: int,
        n_nodes: int,
        ram_base: int,
        bank_size: int,
        bank_host: tuple[int, ...] = (),
        table_bits: int = 16,
    ) -> None:
        self.n_cpus = n_cpus
        self.n_nodes = n_nodes
        self._row = n_nodes * KINDS
        # A fetch row has a second half for pages a remote-filled TLB entry maps.
        self._fetch_row = 2 * self._row
        # CPUs x nodes counters, most never touched: anonymous memory (ctypes
        # would zero, and so commit, all of it: 200 MB at 1024 nodes x 4 CPUs).
        self._fetch = zeroed_array(ctypes.c_uint64, n_cpus * self._fetch_row)
        self._data = zeroed_array(ctypes.c_uint64, n_cpus * self._row)
        # Byte views for counts(): a CPU's row is O(nodes), its nonzero counters few.
        self._fetch_bytes = memoryview(self._fetch).cast("B")
        self._data_bytes = memoryview(self._data).cast("B")
        self._nonzero_out = (ctypes.c_uint64 * (2 * self._fetch_row))()
        self._recent = (ctypes.c_uint64 * (n_cpus * RECENT_BLOCKS))()
        self._recent_pos = (ctypes.c_uint64 * n_cpus)()
        self._monitors = (ctypes.c_uint64 * n_cpus)(*([NO_MONITOR] * n_cpus))
        self._tcache = (_TcacheEntry * (1 << TCACHE_BITS))()
        size = 1 << table_bits
        self._keys = (ctypes.c_uint64 * size)()
        self._slots = (ctypes.c_uint32 * size)()
        self._pas = (ctypes.c_uint64 * size)()
        self._capacity = size // 2  # keep probes short: clear at half load
        self._pages: dict[int, tuple[int, int]] = {}  # mirror: key -> (slot, PA page)
        self.state = _AcctState()
        state = self.state
        state.keys = ctypes.cast(self._keys, _u64p)
        state.slots = ctypes.cast(self._slots, _u32p)
        state.pas = ctypes.cast(self._pas, _u64p)
        state.mask = size - 1
        state.last_slot = NO_SLOT
        state.ram_base = ram_base
        state.bank_size = bank_size
        state.n_nodes = n_nodes
        self._bank_host = (ctypes.c_uint64 * max(1, len(bank_host)))(*bank_host)
        state.bank_host = ctypes.cast(self._bank_host, _u64p)
        for index, regid in enumerate(REGIDS):
            state.regid[index] = regid
        for index, regid in enumerate(XREGIDS):
            state.xregid[index] = regid
        state.tcache = ctypes.cast(self._tcache, ctypes.POINTER(_TcacheEntry))
        state.tcache_mask = (1 << TCACHE_BITS) - 1
        state.insn_budget = NO_BUDGET
        self._cpu = 0
        self.select_cpu(0)
        self._accel = _load_accel()
        self._settle_data = None
        self._nonzero_c = None
        if self._accel is not None:
            self._nonzero_c = ctypes.CFUNCTYPE(
                ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64
            )(self._accel["acct_nonzero"])  # fmt: skip
            self._decoded = ctypes.create_string_buffer(self._accel["decoded_size"] << DECODED_BITS)
            state.decoded = ctypes.addressof(self._decoded)
            state.decoded_mask = (1 << DECODED_BITS) - 1
        # True once the instruction hook is in: it then also does Unicorn's
        # instruction count (see start()).
        self.counts_instructions = False
        self.counts_fetches = False
        # Each CPU's counts when its measurement window opened (sys_window):
        # before it, boot and set-up; after it, what the cost model charges.
        # (nonzero fetch counters, nonzero data counters), as _nonzero gives them.
        self._window_base: dict[int, tuple[dict[int, int], dict[int, int]]] = {}

    @property
    def compiled(self) -> bool:
        """True when the C hooks are in use (the fast path)."""
        return self._accel is not None

    def install(self, uc: Uc, data_accesses: bool = False, fetches: bool = True) -> bool:
        """Add the block hook (and the data-access hook) to ``uc``.

        With the compiled extension this also installs the C interrupt hook
        that enters the EL1 vector for ``svc`` and stops the engine on any
        other exception (see ``take_pending_interrupt``); returns True then,
        False when the caller must handle interrupts itself.  ``fetches``
        False leaves the block hook out: no counts, the benchmark's baseline.

        Compiled, data accesses are counted by an instruction hook that
        decodes each load and store (emu/hw/ldst.h), not by a memory hook:
        any memory hook sends every guest load and store down Unicorn's slow
        path.  That hook also counts instructions for ``emu_start``, so the
        caller must pass its instruction limit to ``start`` instead.
        """
        if self._accel is None:
            if fetches:
                uc.hook_add(UC_HOOK_BLOCK, self._python_block_hook)
            if data_accesses:
                uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self._python_mem_hook)
            return False
        from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib

        state = self.state
        state.reg_read = ctypes.cast(uclib.uc_reg_read, ctypes.c_void_p).value
        state.reg_write = ctypes.cast(uclib.uc_reg_write, ctypes.c_void_p).value
        state.emu_stop = ctypes.cast(uclib.uc_emu_stop, ctypes.c_void_p).value
        user = ctypes.cast(ctypes.pointer(state), ctypes.c_void_p)
        hooks = [(UC_HOOK_INTR, self._accel["acct_intr"])]
        self.counts_fetches = fetches  # a cache model can then ride on acct_block
        if fetches:
            hooks.append((UC_HOOK_BLOCK, self._accel["acct_block"]))
        if data_accesses:
            hooks.append((UC_HOOK_CODE, self._accel["acct_insn"]))
            self._settle_data = ctypes.CFUNCTYPE(
                None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64
            )(self._accel["acct_settle_data"])
            self._uch = uc._uch
            self.counts_instructions = True
        for htype, address in hooks:
            handle = uc_hook_h()
            status = uclib.uc_hook_add(
                uc._uch, ctypes.byref(handle), htype, ctypes.c_void_p(address), user,
                ctypes.c_uint64(1), ctypes.c_uint64(0),
            )  # fmt: skip
            if status != 0:
                raise RuntimeError(f"uc_hook_add failed with {status}")
        return True

    def take_pending_interrupt(self) -> int:
        """The exception the C hook stopped the engine for (0: none), cleared."""
        intno = self.state.pending_intno
        self.state.pending_intno = 0
        return intno

    def start(self, count: int) -> None:
        """Before ``emu_start`` with the instruction hook in: stop after ``count``
        instructions (0: no limit), as Unicorn's own count would."""
        self.state.insn_count = 0
        self.state.insn_budget = count if count > 0 else NO_BUDGET

    def exclusive_monitor(self, cpu: int) -> int:
        """The address ``cpu``'s exclusive monitor holds as the instruction hook
        tracks it (NO_MONITOR: clear); it mirrors the CPU state, so whoever
        restores a CPU's registers (a reset, a call's end) restores this too."""
        return self._monitors[cpu]

    def set_exclusive_monitor(self, cpu: int, address: int) -> None:
        self._monitors[cpu] = address

    def select_cpu(self, cpu: int) -> None:
        """Charge what follows to ``cpu``."""
        self._cpu = cpu
        offset = cpu * self._row * 8
        self.state.counters = ctypes.cast(ctypes.addressof(self._fetch) + 2 * offset, _u64p)
        self.state.data_counters = ctypes.cast(ctypes.addressof(self._data) + offset, _u64p)
        self.state.recent = ctypes.cast(
            ctypes.addressof(self._recent) + cpu * RECENT_BLOCKS * 8, _u64p
        )
        self.state.recent_pos = ctypes.cast(ctypes.addressof(self._recent_pos) + cpu * 8, _u64p)
        self.state.monitor = ctypes.cast(ctypes.addressof(self._monitors) + cpu * 8, _u64p)
        self.state.last_slot = NO_SLOT

    def record(self, va: int, pa: int, node: int, kind: int, remote_fill: bool = False) -> bool:
        """Remember that the 4 KiB page of ``va`` is ``pa``'s, on ``node``, of ``kind``
        (through a TLB entry another node's CPU filled, if ``remote_fill``).

        Returns False when the table had to be emptied to make room: the
        caller must then flush Unicorn's TLB so every live page is recorded
        again by its next fill.
        """
        key = (va >> QEMU_PAGE_SHIFT) + 1
        slot = (remote_fill * self.n_nodes + node) * KINDS + kind
        pa_page = pa >> QEMU_PAGE_SHIFT
        if self._pages.get(key) == (slot, pa_page):
            return True
        complete = True
        if key not in self._pages and len(self._pages) >= self._capacity:
            self.clear_pages()
            complete = False
        self._pages[key] = (slot, pa_page)
        mask = self.state.mask
        index = ((key * _HASH_MULT) & _MASK64) >> 17 & mask
        keys = self._keys
        while keys[index] not in (0, key):
            index = (index + 1) & mask
        keys[index] = key
        self._slots[index] = slot
        self._pas[index] = pa_page
        self.state.cached_key = 0  # the one-entry caches may hold the old page
        self.state.code_key = 0
        self._tcache[(key - 1) & ((1 << TCACHE_BITS) - 1)].key = 0
        return complete

    def fetch_page(self, va: int) -> tuple[int, int, bool] | None:
        """(node, PA, remote-filled) the block hook charges a fetch at ``va``
        to, from the last fill of its page (None: no fill described it)."""
        entry = self._pages.get((va >> QEMU_PAGE_SHIFT) + 1)
        if entry is None:
            return None
        slot, pa_page = entry
        remote, node = divmod(slot // KINDS, self.n_nodes)
        return node, pa_page << QEMU_PAGE_SHIFT | (va & ((1 << QEMU_PAGE_SHIFT) - 1)), bool(remote)

    def clear_pages(self) -> None:
        ctypes.memset(self._keys, 0, ctypes.sizeof(self._keys))
        ctypes.memset(self._tcache, 0, ctypes.sizeof(self._tcache))
        self._pages.clear()
        self.state.cached_key = 0
        self.state.code_key = 0

    def settle(self, pc: int) -> None:
        """Take back the part of the last block that did not retire.

        The block hook charges a whole block when it is entered; when
        execution stopped inside it (end of quantum, fault, exception taken
        at the faulting instruction) the instructions from ``pc`` on did not
        execute.  The last load or store's accesses, which the instruction
        hook charges only when the next instruction begins, are charged now
        unless that load or store is the instruction at ``pc``.
        """
        state = self.state
        if self._settle_data is not None:
            self._settle_data(ctypes.addressof(state), self._uch, pc)
        slot = state.last_slot
        if slot == NO_SLOT:
            return
        start, end = state.last_block, state.last_block + state.last_size
        if start <= pc < end:
            not_run = (end - pc) >> 2
            if slot == NO_SLOT - 1:
                state.unknown -= not_run
            else:
                self._fetch[self._cpu * self._fetch_row + slot] -= not_run
        state.last_slot = NO_SLOT

    def recent_blocks(self, cpu: int) -> list[int]:
        """Start addresses of the last blocks ``cpu`` entered, oldest first."""
        position = self._recent_pos[cpu]
        ring = self._recent[cpu * RECENT_BLOCKS : (cpu + 1) * RECENT_BLOCKS]
        count = min(position, RECENT_BLOCKS)
        return [ring[(position - count + i) % RECENT_BLOCKS] for i in range(count)]

    @property
    def unknown_instructions(self) -> int:
        """Instructions on pages no fill ever described (as the block hook and,
        counting data, the instruction hook saw them): 0 unless accounting is broken."""
        return self.state.unknown + self.state.insn_unknown

    @property
    def unknown_data_accesses(self) -> int:
        """Data accesses whose page no fill described or that were not to RAM: 0
        unless accounting is broken."""
        return self.state.data_unknown

    def _nonzero(self, counters: ctypes.Array, as_bytes: memoryview, start: int, count: int
                 ) -> list[tuple[int, int]]:  # fmt: skip
        """(index - start, value) of the nonzero counters in [start, start + count)."""
        if self._nonzero_c is None:
            return _nonzero_counters_python(as_bytes, start, count)
        address = ctypes.addressof(counters) + 8 * start
        out = self._nonzero_out
        found = self._nonzero_c(address, count, ctypes.addressof(out), len(out) // 2)
        if 2 * found > len(out):  # only a range longer than a CPU's row: grow, scan again
            out = self._nonzero_out = (ctypes.c_uint64 * (2 * found))()
            found = self._nonzero_c(address, count, ctypes.addressof(out), found)
        pairs = out[: 2 * found]
        return list(zip(pairs[0::2], pairs[1::2], strict=True))

    def _counters(self, cpu: int) -> tuple[dict[int, int], dict[int, int]]:
        """``cpu``'s nonzero fetch and data counters by index in its rows."""
        base = cpu * self._row
        return (dict(self._nonzero(self._fetch, self._fetch_bytes, 2 * base, self._fetch_row)),
                dict(self._nonzero(self._data, self._data_bytes, base, self._row)))  # fmt: skip

    def _counts_of(self, fetch: dict[int, int], data: dict[int, int]) -> CpuCounts:
        """CpuCounts of a row's nonzero counters: [local | remote-filled] x
        [node][kind] fetches, then [node][read, write] data accesses."""
        nodes = self.n_nodes
        kernel, other = [0] * nodes, [0] * nodes
        remote_kernel, remote_other = [0] * nodes, [0] * nodes
        for index, value in fetch.items():
            remote, slot = divmod(index, self._row)
            node, kind = divmod(slot, KINDS)
            (kernel if kind == KIND_KERNEL_TEXT else other)[node] += value
            if remote:
                (remote_kernel if kind == KIND_KERNEL_TEXT else remote_other)[node] += value
        reads, writes = [0] * nodes, [0] * nodes
        for index, value in data.items():
            (writes if index & 1 else reads)[index >> 1] = value
        return CpuCounts(
            kernel_fetches_by_node=tuple(kernel),
            other_fetches_by_node=tuple(other),
            data_reads_by_node=tuple(reads),
            data_writes_by_node=tuple(writes),
            remote_filled_kernel_fetches_by_node=tuple(remote_kernel),
            remote_filled_other_fetches_by_node=tuple(remote_other),
        )

    def counts(self, cpu: int) -> CpuCounts:
        return self._counts_of(*self._counters(cpu))

    def fetches_touched(self, cpu: int) -> tuple[dict[int, int], dict[int, int]]:
        """``cpu``'s kernel-text fetches and all its fetches, each as {node:
        count} of the nodes it fetched from: what the scheduler charges to
        tasks every migration, without a list per node."""
        base = cpu * self._row
        kernel: dict[int, int] = {}
        every: dict[int, int] = {}
        for index, value in self._nonzero(self._fetch, self._fetch_bytes, 2 * base,
                                          self._fetch_row):  # fmt: skip
            node, kind = divmod(index % self._row, KINDS)
            every[node] = every.get(node, 0) + value
            if kind == KIND_KERNEL_TEXT:
                kernel[node] = kernel.get(node, 0) + value
        return kernel, every

    def open_window(self, cpu: int) -> None:
        """Start ``cpu``'s measurement window now (again, if it was open)."""
        self._window_base[cpu] = self._counters(cpu)

    def window_opened(self, cpu: int) -> bool:
        return cpu in self._window_base

    def setup_counts(self, cpu: int) -> CpuCounts | None:
        """``cpu``'s counts before its window opened; None if it never did."""
        base = self._window_base.get(cpu)
        return None if base is None else self._counts_of(*base)

    def window_counts(self, cpu: int) -> CpuCounts:
        """``cpu``'s counts since its window opened; all of them if it never did
        (a workload that does not call sys_window is measured whole).  The
        difference is taken on the nonzero counters: O(nodes touched)."""
        base = self._window_base.get(cpu)
        now = self._counters(cpu)
        if base is None:
            return self._counts_of(*now)
        since = []
        for counters, earlier in zip(now, base, strict=True):
            difference = dict(counters)
            for index, value in earlier.items():
                difference[index] = difference.get(index, 0) - value
            since.append({i: v for i, v in difference.items() if v})
        return self._counts_of(*since)

    def instructions(self, cpu: int) -> int:
        counters = self._nonzero(self._fetch, self._fetch_bytes, cpu * self._fetch_row, self._fetch_row)
        return sum(value for _, value in counters)

    # Fallback hooks with the semantics of _accel.c, for hosts without a compiler.
    def _python_block_hook(self, uc: Uc, address: int, size: int, _user: object) -> None:
        state = self.state
        entry = self._pages.get((address >> QEMU_PAGE_SHIFT) + 1)
        state.last_block, state.last_size = address, size
        position = self._recent_pos[self._cpu]
        self._recent[self._cpu * RECENT_BLOCKS + position % RECENT_BLOCKS] = address
        self._recent_pos[self._cpu] = position + 1
        if entry is None:
            state.unknown += size >> 2
            state.last_slot = NO_SLOT - 1
            return
        slot = entry[0]
        self._fetch[self._cpu * self._fetch_row + slot] += size >> 2
        state.last_slot = slot

    def _python_mem_hook(
        self, uc: Uc, access: int, address: int, size: int, value: int, _user: object
    ) -> None:
        state = self.state
        node = (address - state.ram_base) // state.bank_size if address >= state.ram_base else -1
        if 0 <= node < self.n_nodes:
            self._data[self._cpu * self._row + node * 2 + (access == 17)] += 1
        else:
            state.data_unknown += 1
