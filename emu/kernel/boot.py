"""Boot: what the boot loader and Linux's boot-time C do before the first
instruction runs, done on the host and written into guest RAM exactly as
the C code would write it.

Mirrors, in order: loading the image, paging_init() (map_kernel, map_mem,
the idmap), bootmem_init() -> ktext_replication_init(), and the parts of
smp_prepare_cpus() and the task setup the synthetic kernel leaves to its
loader (stacks, cpu_to_node, boot_regs).  Then CPU 0 starts at start_kernel
on node 0's root; the guest brings up every other CPU itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from unicorn.arm64_const import (
    UC_ARM64_REG_MAIR_EL1,
    UC_ARM64_REG_PC,
    UC_ARM64_REG_SP,
    UC_ARM64_REG_TTBR0_EL1,
    UC_ARM64_REG_TTBR1_EL1,
    UC_ARM64_REG_X0,
)

from emu.errors import ConfigError
from emu.hw.cpu import SCTLR_EL1, TCR_EL1
from emu.hw.machine import Machine
from emu.hw.pagetable import (
    DESC_TABLE,
    DESC_VALID,
    MAIR_EL1_LINUX,
    Geometry,
    Prot,
    make_tcr,
    make_ttbr,
)
from emu.kernel.alternative import apply_boot_alternatives
from emu.kernel.image import WORKLOAD_PREFIX, KernelImage
from emu.kernel.ktext import Replication, ktext_replication_init, swapper_pg_dir_node_phys
from emu.kernel.layout import KernelLayout, boot_layout
from emu.kernel.mmu import (
    TableAllocator,
    create_idmap,
    create_pgd_mapping,
    early_fixmap_init,
    early_pgtable_alloc,
    map_kernel,
    map_mem,
    mark_linear_text_alias_ro,
)
from emu.kernel.pgtable_prot import PAGE_KERNEL, PAGE_USER, PAGE_USER_EXEC, PAGE_USER_RO

USER_BASE = 0x40_0000  # USER_BASE of linker_scripts/kernel.ld: where user sections are linked and run
USER_STACK_BASE = 0x1000_0000
USER_STACK_SIZE = 64 * 1024  # a multiple of every granule
USER_STACK_STRIDE = 2 * USER_STACK_SIZE  # an unmapped guard between stacks
KERNEL_STACK_SIZE = 16 * 1024  # arm64 THREAD_SIZE with 4K/16K pages (MIN_THREAD_SHIFT 14)
SCTLR_RESET = 0x00C50838  # Unicorn's reset value: MMU, caches off
SCTLR_MMU_ON = SCTLR_RESET | 0x1 | 0x4 | 0x1000  # M, C, I


@dataclass
class BootParams:
    ktext: bool = False  # the ktext= command-line switch; the series defaults to off
    workload: str = "syscall"
    iterations: int = 1000  # per task; 0 runs until the instruction limit
    warmup: int = 0  # iterations per task before its measurement window opens
    rodata_prot: Prot = PAGE_KERNEL  # what the series maps the rodata copies with
    cpu_features: frozenset[str] = frozenset()  # emulated CPU capabilities (--cpu-features)
    syscalls: tuple[tuple[int, str], ...] = ()  # --syscall NR=SYMBOL, after the image's own
    user_memory: str = "node0"  # where user text and rodata live: "node0" or "local"


@dataclass
class Kernel:
    """The host's view of the booted kernel."""

    image: KernelImage
    geometry: Geometry
    layout: KernelLayout
    replication: Replication
    swapper_pa: int
    idmap_pa: int
    user_pgd_pa: int
    tcr: int
    params: BootParams
    syscalls: dict[int, str]  # syscall hooks installed at boot: NR -> handler symbol
    text_poke_va: int = 0  # __fix_to_virt(FIX_TEXT_POKE0)
    text_poke_pte: int = 0  # PA of its PTE

    def ttbr1_of_node(self, node: int) -> int:
        return make_ttbr(swapper_pg_dir_node_phys(self.replication, node))

    def symbolize(self, va: int) -> str:
        image = self.image
        if image.is_user(va):  # user sections are linked at the VA they run at
            return image.symbolize(va) + " (user)"
        if va < 1 << 48 and image.load_pa <= va < image.load_pa + image.image_size:
            return image.symbolize(va + image.kimage_voffset) + " (phys)"
        return image.symbolize(va)


def _write_u64(machine: Machine, image: KernelImage, symbol: str, index: int, value: int) -> None:
    machine.physmem.write_u64(image.pa_of(image.sym(symbol)) + 8 * index, value)


def _check_fit(machine: Machine, image: KernelImage, layout: KernelLayout) -> None:
    topology = machine.topology
    if image.kimage_vaddr != layout.kimage_vaddr:
        raise ConfigError(
            f"{image.path} is linked at {image.kimage_vaddr:#x} but the {layout.name} layout "
            f"puts KIMAGE_VADDR at {layout.kimage_vaddr:#x}; rebuild it with "
            f"--defsym KIMAGE_VADDR={layout.kimage_vaddr:#x}"
        )
    bank0 = machine.physmem.banks[0]
    start = min(seg.paddr for seg in image.elf.segments)
    end = max(seg.paddr + seg.memsz for seg in image.elf.segments)
    if not (bank0.base <= start and end <= bank0.base + bank0.size):
        raise ConfigError(
            f"{image.path} loads at [{start:#x}, {end:#x}), outside node 0's RAM "
            f"[{bank0.base:#x}, {bank0.base + bank0.size:#x})"
        )
    if topology.n_cpus > image.sym("NR_CPUS"):
        raise ConfigError(f"{topology.n_cpus} CPUs, but the kernel has NR_CPUS={image.sym('NR_CPUS')}")
    if topology.nodes > image.sym("MAX_NUMNODES"):
        raise ConfigError(
            f"{topology.nodes} nodes, but the kernel has MAX_NUMNODES={image.sym('MAX_NUMNODES')}"
        )


USER_SECTIONS = (  # (first, last) symbols of each user range and how tasks map it
    ("__user_text_start", "__user_text_end", PAGE_USER_EXEC),
    ("__user_rodata_start", "__user_rodata_end", PAGE_USER_RO),
    ("__user_data_start", "__user_data_end", PAGE_USER),
)


def user_ranges(image: KernelImage, granule: int) -> list[tuple[int, int, int, Prot]]:
    """``(va, pa, size, prot)`` of each user range the image has: linked at
    the VA tasks run it at, loaded at the PA its segment gives (its LMA)."""
    ranges = []
    for first, last, prot in USER_SECTIONS:
        if not (image.has(first) and image.has(last)):
            continue
        start, end = image.sym(first), image.sym(last)
        end = (end + granule - 1) & ~(granule - 1)
        if end > start:
            ranges.append((start, image.user_pa_of(start), end - start, prot))
    return ranges


def check_user_image(image: KernelImage) -> None:
    """Refuse an image whose user sections are not linked at a user VA (a
    script from before user sections had their own load addresses)."""
    if not image.has("__user_text_start"):
        return
    start = image.sym("__user_text_start")
    if start >= USER_STACK_BASE:
        raise ConfigError(
            f"{image.path}: .user.text is linked at {start:#x}, not at the user VA it runs "
            f"at; link it at USER_BASE ({USER_BASE:#x}) with its load address after _end "
            "(see .user.text in linker_scripts/kernel.ld)"
        )


USER_MEMORY_CHOICES = ("node0", "local")


def _map_user_image(machine: Machine, image: KernelImage, geometry: Geometry, pgd: int,
                    alloc: TableAllocator, node: int = 0) -> None:  # fmt: skip
    """Map the user sections into ``pgd``.  For ``node`` other than 0, text
    and rodata are that node's own copy (--user-memory local), made here from
    the image; data and bss stay the one shared copy in node 0."""
    physmem = machine.physmem
    for va, pa, size, prot in user_ranges(image, geometry.granule):
        if node != 0 and prot is not PAGE_USER:
            copy = physmem.memblock_alloc_node(size, geometry.granule, node)
            physmem.write(copy, physmem.read(pa, size))
            pa = copy
        create_pgd_mapping(physmem, geometry, pgd, va, pa, size, prot, alloc)


def user_address_spaces(machine: Machine, image: KernelImage, geometry: Geometry,
                        alloc: TableAllocator, user_memory: str) -> list[int]:  # fmt: skip
    """The user root of each node: one shared root (node0), or one per node
    mapping that node's copy of user text and rodata (local)."""
    if user_memory not in USER_MEMORY_CHOICES:
        raise ConfigError(f"user memory {user_memory!r}: use "
                          f"{' or '.join(USER_MEMORY_CHOICES)}")
    nodes = machine.topology.nodes
    if user_memory == "node0":
        pgd = alloc.top_table()
        _map_user_image(machine, image, geometry, pgd, alloc)
        return [pgd] * nodes
    if not image.has("task_user_ttbr0"):
        raise ConfigError(f"{image.path}: --user-memory local needs task_user_ttbr0 (per-CPU "
                          "user roots) in the kernel; this kernel has one shared root")
    roots = []
    for node in range(nodes):
        pgd = alloc.top_table()
        _map_user_image(machine, image, geometry, pgd, alloc, node)
        roots.append(pgd)
    return roots


SYSCALL_HOOK_PREFIX = "__ktext_syscall_"  # __ktext_syscall_<NR> = the handler (SYSCALL_DEFINE)


def syscall_hooks(image: KernelImage,
                  extra: tuple[tuple[int, str], ...] = ()) -> dict[int, tuple[str, int]]:  # fmt: skip
    """NR -> (handler name, address): the image's ``__ktext_syscall_<NR>``
    symbols (SYSCALL_DEFINE in kernel_blob/syscall.inc), then ``extra``
    (--syscall NR=SYMBOL), which wins for the same number."""
    hooks: dict[int, tuple[str, int]] = {}
    for name, sym in image.elf.symbols.items():
        number = name[len(SYSCALL_HOOK_PREFIX):]
        if name.startswith(SYSCALL_HOOK_PREFIX) and number.isdigit():
            hooks[int(number)] = (image.symbolize(sym.value), sym.value)
    for nr, symbol in extra:
        if not image.has(symbol):
            raise ConfigError(f"--syscall {nr}={symbol}: no symbol {symbol!r} in the kernel "
                              "(add the file defining it with --add)")
        hooks[nr] = (symbol, image.sym(symbol))
    return hooks


def install_syscalls(machine: Machine, image: KernelImage,
                     hooks: dict[int, tuple[str, int]]) -> dict[int, str]:  # fmt: skip
    """Point ``sys_call_table[NR]`` at each hook's handler, in node 0's image
    before any copy is made (the table is rodata, replicated with it).  Only
    a free slot (``sys_ni_syscall``) may be taken, and only by kernel text."""
    if not hooks:
        return {}
    nr_syscalls = image.sym("__NR_syscalls") if image.has("__NR_syscalls") else 0
    table = image.pa_of(image.sym("sys_call_table"))
    free = image.sym("sys_ni_syscall") if image.has("sys_ni_syscall") else None
    text = (image.sym("_stext"), image.sym("_etext"))
    installed = {}
    for nr, (symbol, handler) in sorted(hooks.items()):
        if not 0 <= nr < nr_syscalls:
            raise ConfigError(f"syscall {nr} ({symbol}): the table has numbers 0 to "
                              f"{nr_syscalls - 1} (__NR_syscalls)")
        if not text[0] <= handler < text[1]:
            where = "user code" if image.is_user(handler) else f"not kernel text ({handler:#x})"
            raise ConfigError(f"syscall {nr}: {symbol} is {where}; a syscall handler must be "
                              "in the kernel's .text (add its file with --add, not --add-user)")
        current = machine.physmem.read_u64(table + 8 * nr)
        if current not in (free, handler):
            spare = [n for n in range(nr_syscalls)
                     if machine.physmem.read_u64(table + 8 * n) == free]
            raise ConfigError(f"syscall {nr} ({symbol}): syscall {nr} is "
                              f"{image.symbolize(current)} already; free numbers: "
                              f"{', '.join(map(str, spare)) or 'none'}")
        machine.physmem.write_u64(table + 8 * nr, handler)
        installed[nr] = symbol
    return installed


def workload_entry(image: KernelImage, workload: str) -> int:
    symbol = WORKLOAD_PREFIX + workload
    if not image.has(symbol) or not image.has("__user_text_start"):
        known = ", ".join(image.workloads()) or "none"
        raise ConfigError(f"unknown workload {workload!r} (this kernel has: {known})")
    entry = image.sym(symbol)
    if not image.sym("__user_text_start") <= entry < image.sym("__user_text_end"):
        section = image.elf.symbols[symbol].section or "no section (an absolute symbol)"
        raise ConfigError(
            f"workload {workload!r}: {symbol} is in {section} at {entry:#x}, not in .user.text, "
            "so no task can run it at EL0; put it in .user.text (.section .user.text, \"ax\") "
            "or add its file with --add-user, which makes the file's .text user code"
        )
    return entry


def boot(machine: Machine, image: KernelImage, geometry: Geometry, params: BootParams) -> Kernel:
    """Load ``image``, build its tables, replicate if asked, and start CPU 0."""
    physmem = machine.physmem
    layout = boot_layout(geometry)
    _check_fit(machine, image, layout)
    check_user_image(image)
    user_pc = workload_entry(image, params.workload)
    for seg in image.elf.segments:
        physmem.write(seg.paddr, seg.data)
        physmem.reserve(seg.paddr, seg.memsz)

    # The syscall table as the kernel was built with it: SYSCALL_DEFINE entries
    # and --syscall, written before replication copies rodata.
    syscalls = install_syscalls(machine, image, syscall_hooks(image, params.syscalls))

    # paging_init(): the image and the linear map in swapper_pg_dir; the
    # idmap for secondaries.  Tables come from early_pgtable_alloc(): the top
    # of RAM, the last node's.
    early = early_pgtable_alloc(physmem, geometry)
    swapper_pa = image.pa_of(image.sym("swapper_pg_dir"))
    map_kernel(physmem, geometry, swapper_pa, image, early)
    map_mem(physmem, geometry, swapper_pa, layout, early)
    idmap_pa = early.top_table()
    create_idmap(physmem, geometry, idmap_pa, image, early)
    # Tables made later by the boot CPU come from the page allocator, which
    # prefers the CPU's node (node 0); early_fixmap_init()'s are the image's
    # static bm_pud/bm_pmd/bm_pte, in node 0 with the image.
    node0_tables = TableAllocator(physmem, geometry, node=0)
    # early_fixmap_init(): the tables of the FIX_TEXT_POKE0 slot, shared by every root
    text_poke_va = layout.fix_to_virt(layout.fix_text_poke0())
    text_poke_pte = early_fixmap_init(physmem, geometry, swapper_pa, text_poke_va, node0_tables)

    # The kernel stacks, vmap'ed before replication copies swapper's root, so
    # every node's root shares the vmalloc slot's tables (as the series' roots do).
    machine.kernel_stack_guards = []
    stack_tops = [_vmap_stack(machine, image, geometry, layout, swapper_pa, node0_tables, cpu,
                              machine.topology.cpu_to_node(cpu))
                  for cpu in range(machine.topology.n_cpus)]

    # bootmem_init(): replication
    replication = ktext_replication_init(
        physmem, geometry, layout, image, swapper_pa, params.ktext, params.rodata_prot
    )
    apply_boot_alternatives(machine, image, layout, replication, params.cpu_features)
    # smp_cpus_done() -> mark_linear_text_alias_ro(), after the alternatives.
    # Done before the first instruction: nothing the guest runs writes node
    # 0's text through its linear alias while CPUs come up.
    mark_linear_text_alias_ro(physmem, geometry, swapper_pa, image, layout, node0_tables)

    # The user address space every task shares (one process, one thread per
    # CPU); with --user-memory local, one root per node, alike but for where
    # user text and rodata are.  Every root maps every task's stack.
    user_pgds = user_address_spaces(machine, image, geometry, node0_tables, params.user_memory)
    user_pgd = user_pgds[0]
    phys_offset = physmem.banks[0].base
    topology = machine.topology
    for cpu in range(topology.n_cpus):
        node = topology.cpu_to_node(cpu)
        stack = physmem.memblock_alloc_node(USER_STACK_SIZE, geometry.granule, node)
        stack_va = USER_STACK_BASE + cpu * USER_STACK_STRIDE
        for pgd in dict.fromkeys(user_pgds):
            create_pgd_mapping(physmem, geometry, pgd, stack_va, stack, USER_STACK_SIZE,
                               PAGE_USER, node0_tables)
        _write_u64(machine, image, "task_user_sp", cpu, stack_va + USER_STACK_SIZE)
        if image.has("task_user_ttbr0"):
            _write_u64(machine, image, "task_user_ttbr0", cpu, make_ttbr(user_pgds[node]))
        _write_u64(machine, image, "cpu_stack_tops", cpu, stack_tops[cpu])
        physmem.write(image.pa_of(image.sym("__cpu_to_node")) + 4 * cpu, node.to_bytes(4, "little"))
    for node in range(topology.nodes):
        _write_u64(machine, image, "ktext_pgd_phys", node,
                   swapper_pg_dir_node_phys(replication, node))
        copy = replication.text_copies[node]
        linear = 0 if copy is None else layout.linear_va(copy, phys_offset)
        _write_u64(machine, image, "kernel_texts", node, linear)

    if image.has("text_poke_fixmap"):
        fixmap = (text_poke_va, layout.linear_va(text_poke_pte, phys_offset),
                  PAGE_KERNEL.bits() | DESC_VALID | DESC_TABLE, geometry.granule)
        for index, value in enumerate(fixmap):
            _write_u64(machine, image, "text_poke_fixmap", index, value)

    tcr = make_tcr(geometry, geometry0=geometry)
    boot_regs = image.pa_of(image.sym("boot_regs"))
    for field_name, value in (
        ("BOOT_TCR", tcr), ("BOOT_MAIR", MAIR_EL1_LINUX), ("BOOT_SCTLR", SCTLR_MMU_ON),
        ("BOOT_IDMAP_TTBR0", idmap_pa), ("BOOT_KIMAGE_VOFFSET", image.kimage_voffset),
        ("BOOT_USER_TTBR0", make_ttbr(user_pgd)), ("BOOT_USER_PC", user_pc),
        ("BOOT_USER_ARG", params.iterations), ("BOOT_NR_CPUS", topology.n_cpus),
        ("BOOT_NR_NODES", topology.nodes), ("BOOT_USER_WARMUP", params.warmup),
    ):  # fmt: skip
        physmem.write_u64(boot_regs + image.sym(field_name), value)

    kernel = Kernel(image, geometry, layout, replication, swapper_pa, idmap_pa, user_pgd, tcr,
                    params, syscalls, text_poke_va, text_poke_pte)
    machine.symbolize = kernel.symbolize
    machine.mmu.set_kernel_text(image.sym("_stext"), image.sym("_etext"))
    reserved_pa = image.pa_of(image.sym("reserved_pg_dir"))
    machine.power_on(0, {
        TCR_EL1: tcr,
        UC_ARM64_REG_MAIR_EL1: MAIR_EL1_LINUX,
        UC_ARM64_REG_TTBR0_EL1: make_ttbr(reserved_pa),
        UC_ARM64_REG_TTBR1_EL1: make_ttbr(swapper_pa),
        SCTLR_EL1: SCTLR_MMU_ON,
        UC_ARM64_REG_SP: image.sym("cpu_stack_tops") and _stack_top(machine, image, 0),
        UC_ARM64_REG_X0: 0,
        UC_ARM64_REG_PC: image.sym("start_kernel"),
    })  # fmt: skip
    return kernel


def kernel_stack_size(geometry: Geometry) -> int:
    """THREAD_SIZE with CONFIG_VMAP_STACK: at least a page (arm64 thread_info.h)."""
    return max(KERNEL_STACK_SIZE, geometry.granule)


def kernel_stack_va(geometry: Geometry, layout: KernelLayout, n_cpus: int, cpu: int) -> int:
    """Base of ``cpu``'s kernel stack, at the top of the vmalloc area (clear of
    the kernel image the baseline layout puts at its start, and of the first
    vmalloc slot, which modules and vmap users fill first), with one unmapped
    page below each stack: the guard page of a vmap stack (arch_alloc_vmap_stack())."""
    granule = geometry.granule
    stride = kernel_stack_size(geometry) + granule
    base = (layout.vmalloc_end & ~(granule - 1)) - n_cpus * stride
    return base + granule + cpu * stride


def _vmap_stack(machine: Machine, image: KernelImage, geometry: Geometry, layout: KernelLayout,
                swapper_pa: int, tables: TableAllocator, cpu: int, node: int) -> int:
    """Allocate ``cpu``'s kernel stack on ``node``, map it PAGE_KERNEL in the vmalloc
    area of swapper_pg_dir, record its guard page; the stack's top."""
    size = kernel_stack_size(geometry)
    stack = machine.physmem.memblock_alloc_node(size, geometry.granule, node)
    va = kernel_stack_va(geometry, layout, machine.topology.n_cpus, cpu)
    create_pgd_mapping(machine.physmem, geometry, swapper_pa, va, stack, size, PAGE_KERNEL, tables)
    machine.kernel_stack_guards = [*machine.kernel_stack_guards,
                                   (va - geometry.granule, va, cpu)]
    return va + size


def _stack_top(machine: Machine, image: KernelImage, cpu: int) -> int:
    return machine.physmem.read_u64(image.pa_of(image.sym("cpu_stack_tops")) + 8 * cpu)
