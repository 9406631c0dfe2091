"""A booted system: machine configuration + RAM + Unicorn machine + kernel,
ready to run one workload and report on it.  The API tests and the CLI use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from unicorn import UcError
from unicorn.arm64_const import (
    UC_ARM64_REG_PC,
    UC_ARM64_REG_PSTATE,
    UC_ARM64_REG_SP,
    UC_ARM64_REG_TTBR1_EL1,
    UC_ARM64_REG_X0,
    UC_ARM64_REG_X29,
    UC_ARM64_REG_X30,
)

from emu.blob.build import shipped_kernel_elf
from emu.blob.elf import MAX_FILE_SIZE as MAX_ELF_BYTES
from emu.blob.footprint_data import default_footprint, footprint_json
from emu.blob.synth import Footprint
from emu.config import MachineConfig
from emu.errors import ElfError, GuestFault, UsageError
from emu.fileio import read_input_file
from emu.hw.cpu import PSTATE_EL1H_MASKED, SPSR_EL1, PowerState, read_sysreg, write_sysreg
from emu.hw.machine import DEFAULT_QUANTUM, Machine, RunResult
from emu.hw.pagetable import Geometry, decode_ttbr
from emu.hw.physmem import PhysMem
from emu.hw.tlb import is_domains
from emu.jsonfmt import sparse_by_node
from emu.kernel.alternative import check_alternatives
from emu.kernel.boot import BootParams, Kernel, boot
from emu.kernel.cmdline import ktext_early_param
from emu.kernel.cpufeature import system_cpucaps
from emu.kernel.image import load_kernel_image
from emu.kernel.layout import (
    boot_layout,
    boot_layout_report,
    replication_refusal,
    replication_sanity_check,
)
from emu.kernel.pgtable_prot import PAGE_KERNEL, PAGE_KERNEL_RO
from emu.kernel.sched import Scheduler
from emu.workloads import workload_defaults

DEFAULT_MAX_INSTRUCTIONS = 50_000_000


@dataclass(frozen=True)
class RunSpec:
    """What to run on the machine, beyond the machine itself."""

    ktext: bool = False
    workload: str = "syscall"
    iterations: int = 1000
    max_instructions: int = DEFAULT_MAX_INSTRUCTIONS
    quantum: int = DEFAULT_QUANTUM
    migrate_every: int = 0
    kernel: Path | None = None  # a custom kernel ELF; None: the shipped one
    data_accesses: bool = False
    cpu_features: tuple[str, ...] = ()
    extra_sources: tuple[Path, ...] = ()  # .S/.s/.c files linked into the shipped kernel
    user_sources: tuple[Path, ...] = ()  # files linked as user code (--add-user)
    syscalls: tuple[tuple[int, str], ...] = ()  # (NR, handler symbol) hooked at boot (--syscall)
    user_memory: str = "node0"  # user text/rodata in node 0's RAM, or each node's ("local")
    count_fetches: bool = True  # False: no accounting at all (the benchmark's baseline)
    is_domain: str = "machine"  # Inner Shareable domains: "machine" (Linux) or "node" (emu/hw/tlb.py)
    ro_replicas: bool = False  # rodata copies PAGE_KERNEL_RO, not the series' PAGE_KERNEL
    warmup: int = 0  # iterations per task run before its measurement window opens
    footprint: Footprint | None = None  # generated paths and dbsim; None: default_footprint()


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a kernel ELF file, as the report names the kernel."""
    try:
        return hashlib.sha256(read_input_file(path, MAX_ELF_BYTES)).hexdigest()
    except OSError as err:  # read_elf just read it: it changed under us
        raise ElfError(f"cannot read {path}: {err.strerror or err}") from None


def hexa(value: int) -> str:
    return f"{value:#x}"


class System:
    """One machine with its kernel booted; ``run()`` then ``report()``."""

    def __init__(self, config: MachineConfig, spec: RunSpec) -> None:
        self.config = config
        self.spec = spec
        self.geometry = Geometry(config.granule, config.va_bits)
        layout = boot_layout(self.geometry)
        self.physmem = PhysMem.from_topology(config.topology)
        self.machine = Machine(
            config.topology, self.physmem, spec.quantum, spec.data_accesses, spec.count_fetches
        )
        self.machine.tlbs.set_domains(is_domains(self.machine.tlbs.cpu_nodes, spec.is_domain))
        self.footprint: Footprint | None = None  # what the shipped kernel was generated with
        if spec.kernel is None:
            defsyms = {"KIMAGE_VADDR": layout.kimage_vaddr,
                       "PHYS_OFFSET_LOAD": self.physmem.banks[0].base,
                       "PAGE_SIZE": self.geometry.granule}  # fmt: skip
            self.footprint = spec.footprint or default_footprint()
            elf = shipped_kernel_elf(defsyms, spec.extra_sources, spec.user_sources,
                                     self.footprint)
        else:
            elf = spec.kernel
        self.image = load_kernel_image(elf)
        self.kernel_sha256 = file_sha256(elf)
        params = BootParams(
            ktext=spec.ktext,
            workload=spec.workload,
            iterations=spec.iterations,
            warmup=spec.warmup,
            cpu_features=frozenset(spec.cpu_features),
            rodata_prot=PAGE_KERNEL_RO if spec.ro_replicas else PAGE_KERNEL,
            syscalls=spec.syscalls,
            user_memory=spec.user_memory,
        )
        self.kernel: Kernel = boot(self.machine, self.image, self.geometry, params)
        self.scheduler = Scheduler(self.machine, spec.migrate_every)
        self.result: RunResult | None = None

    def run(
        self, max_instructions: int | None = None, progress: Callable[[int], None] | None = None
    ) -> RunResult:
        """Run until every CPU is off or the instruction limit (cumulative) is reached.

        ``progress`` is called after each scheduling round with the
        instructions retired so far.
        """
        limit = self.spec.max_instructions if max_instructions is None else max_instructions
        callbacks: list[Callable[[], None]] = []
        if self.spec.migrate_every:
            callbacks.append(self.scheduler.on_round)
        if progress is not None:
            callbacks.append(lambda: progress(self.machine.total_instructions))
        on_round = None
        if callbacks:
            def on_round() -> None:
                for callback in callbacks:
                    callback()
        self.result = self.machine.run(limit, on_round)
        return self.result

    def call(
        self, cpu: int, function: str | int, *args: int, max_instructions: int = 1_000_000
    ) -> dict[str, int]:
        """Run a kernel function on ``cpu`` until it returns; its registers after.

        The function runs at EL1 with the CPU's own translation tables (its
        node's root), arguments in x0-x7.  The CPU's state before the call is
        restored afterwards, except for its TLB and the memory the function
        wrote; its instructions are counted like any other.  Returns x0-x30,
        sp and pc.
        """
        machine = self.machine
        if not 0 <= cpu < len(machine.cpus):
            raise UsageError(f"no CPU {cpu}: the machine has {len(machine.cpus)}")
        vcpu = machine.cpus[cpu]
        if vcpu.context is None and not vcpu.entry:
            raise UsageError(f"CPU {cpu} has not been brought up yet: run the machine first")
        if len(args) > 8:
            raise UsageError("at most 8 arguments (x0-x7)")
        address = self.image.sym(function) if isinstance(function, str) else function
        machine.switch_to(vcpu)
        uc = machine.uc
        saved = uc.context_save()
        saved_monitor = machine.accounting.exclusive_monitor(cpu)
        # Return into head text, which a call never runs, away from its page's
        # first word (Unicorn looks at the preceding page when it stops at a
        # page's first instruction).  Unicorn stops before running it.
        sentinel = self.image.kimage_vaddr + 0x10
        if self.image.has("call_sentinel"):  # in .text: mapped even where head text is not
            sentinel = self.image.sym("call_sentinel")
        try:
            for index, value in enumerate(args):
                uc.reg_write(UC_ARM64_REG_X0 + index, value & ((1 << 64) - 1))
            uc.reg_write(UC_ARM64_REG_X30, sentinel)
            uc.reg_write(UC_ARM64_REG_PSTATE, PSTATE_EL1H_MASKED)
            write_sysreg(uc, SPSR_EL1, read_sysreg(uc, SPSR_EL1))  # re-derive the EL
            machine.mmu.fault = None
            machine.accounting.take_pending_interrupt()
            name = self.kernel.symbolize(address)
            try:
                with machine.interrupts_deferred():
                    machine.emu_start(address, sentinel, max_instructions)
            except UcError as err:
                pc = uc.reg_read(UC_ARM64_REG_PC)
                pending = machine.mmu.fault
                what = f"fault at {pending.va:#x} in call of {name}" if pending else (
                    f"{err} in call of {name}")
                report = machine.fault_report(vcpu, pc, what, far=pending.va if pending else None)
                raise GuestFault(report.message(), report) from None
            pc = uc.reg_read(UC_ARM64_REG_PC)
            machine.accounting.settle(pc)
            intno = machine.accounting.take_pending_interrupt()
            if intno:
                # Any exception but svc stopped the engine: nothing of the
                # caller's is there to handle it, so the call failed.
                what = {1: "undefined instruction", 7: "brk", 13: "smc"}.get(
                    intno, f"exception {intno}")
                report = machine.fault_report(vcpu, pc, f"{what} in call of {name}")
                raise GuestFault(report.message(), report)
            registers = {f"x{i}": uc.reg_read(UC_ARM64_REG_X0 + i) for i in range(29)}
            registers["x29"] = uc.reg_read(UC_ARM64_REG_X29)
            registers["x30"] = uc.reg_read(UC_ARM64_REG_X30)
            registers["sp"] = uc.reg_read(UC_ARM64_REG_SP)
            registers["pc"] = uc.reg_read(UC_ARM64_REG_PC)
            if registers["pc"] != sentinel:
                raise GuestFault(
                    f"CPU {cpu}: {self.kernel.symbolize(address)} did not return within "
                    f"{max_instructions} instructions (pc {registers['pc']:#x})"
                )
            return registers
        finally:
            uc.context_restore(saved)
            machine.accounting.set_exclusive_monitor(cpu, saved_monitor)
            machine.flush_tlb()

    def syscall(self, cpu: int, nr: int, *args: int, max_instructions: int = 1_000_000
                ) -> dict[str, int]:  # fmt: skip
        """Run system call ``nr``'s handler on ``cpu`` as the kernel would
        dispatch it: the function ``sys_call_table[nr]`` points at (read from
        the image; every node's copy holds the same), at EL1, with ``args``."""
        image = self.image
        limit = image.sym("__NR_syscalls") if image.has("__NR_syscalls") else 0
        if not 0 <= nr < limit:
            raise UsageError(f"no system call {nr}: the table has numbers 0 to {limit - 1}")
        handler = self.physmem.read_u64(image.pa_of(image.sym("sys_call_table")) + 8 * nr)
        return self.call(cpu, handler, *args, max_instructions=max_instructions)

    # ---------------------------------------------------------------- checks
    def cpu_ttbr1(self, cpu: int) -> int | None:
        vcpu = self.machine.cpus[cpu]
        if vcpu.context is None:
            return None
        if self.machine.current is vcpu:
            return self.machine.uc.reg_read(UC_ARM64_REG_TTBR1_EL1)
        return vcpu.context.reg_read(UC_ARM64_REG_TTBR1_EL1)

    def copies_identical(self) -> bool:
        repl = self.kernel.replication
        stext_pa = self.image.pa_of(self.image.sym("_stext"))
        original = self.physmem.read(stext_pa, repl.copy_size)
        return all(
            self.physmem.read(copy, repl.copy_size) == original
            for copy in repl.text_copies
            if copy is not None
        )

    def roots_differ_only_in_kernel_slots(self) -> bool:
        repl = self.kernel.replication
        entries = self.geometry.top_entries
        base, end = repl.kidx
        root0 = [self.physmem.read_u64(repl.pgd_phys[0] + 8 * i) for i in range(entries)]
        for pgd in repl.pgd_phys[1:]:
            for index in range(entries):
                if base <= index <= end:
                    continue
                if self.physmem.read_u64(pgd + 8 * index) != root0[index]:
                    return False
        return True

    def ttbr1_matches_node(self) -> bool:
        repl = self.kernel.replication
        for vcpu in self.machine.cpus:
            ttbr1 = self.cpu_ttbr1(vcpu.index)
            if ttbr1 is None or decode_ttbr(ttbr1).baddr != repl.pgd_phys[vcpu.node]:
                return False
        return True

    def kernel_warnings(self) -> list[str]:
        """The boot warnings Linux with the series would print, in order:
        do_early_param()'s for each malformed ``ktext=``, then patch 05's
        sanity check, which ktext_replication_init() runs whatever ``ktext=``
        says (when REPLICATE_KTEXT can be built for the layout at all), then
        each text copy memblock placed off its node (Linux prints nothing)."""
        warnings = list(ktext_early_param(self.config.cmdline).warnings)
        layout = self.kernel.layout
        if replication_refusal(layout) is None:
            image = self.image
            check = replication_sanity_check(layout, image.kimage_vaddr, image.sym("_end"))
            if check is not None:
                warnings.append(check)
        repl = self.kernel.replication
        warnings += [
            f"ktext: node {node}'s copy of the kernel text is in node {home}'s RAM: node "
            f"{node} had no free {repl.copy_size:#x}-byte block and memblock_alloc_node() fell "
            f"back (the series does not check), so node {node}'s CPUs fetch kernel text remotely"
            for node, home in repl.misplaced_copies
        ]
        return warnings

    def cnp_report(self) -> dict:
        """What CnP did in the run: the CPUs whose TTBR1_EL1 has CnP set (at
        the end), the Inner Shareable domains, the entries left in the
        domains' shared TLBs, the translations CPUs used that a CPU of another
        node had filled there, and the kernel-text fetches made through those
        (all of them, and those served by another node's memory: its copy of
        the text with replication on)."""
        accounting = self.machine.accounting
        cpus, through, remote = [], 0, 0
        for vcpu in self.machine.cpus:
            ttbr1 = self.cpu_ttbr1(vcpu.index)
            if ttbr1 is not None and decode_ttbr(ttbr1).cnp:
                cpus.append(vcpu.index)
            by_node = accounting.counts(vcpu.index).remote_filled_kernel_fetches_by_node
            if by_node:
                through += sum(by_node)
                remote += sum(by_node) - by_node[vcpu.node]
        tlbs = self.machine.tlbs
        fills = tlbs.remote_fill_summary()
        return {
            "cpus": cpus,
            "is_domain": self.spec.is_domain,
            "shared_tlb_entries": sum(len(tlb) for tlb in tlbs.shared.values()),
            "remote_filled_translations": fills["translations"],
            "remote_filled_uses": fills["uses"],
            "cpus_using_remote_fills": fills["cpus"],
            "kernel_fetches_through_remote_fills": through,
            "remote_kernel_fetches_through_remote_fills": remote,
        }

    # ---------------------------------------------------------------- report
    def report(self) -> dict:
        """One RUN of the ``{"runs": [...]}`` report (field names are a contract)."""
        topology = self.config.topology
        image = self.image
        repl = self.kernel.replication
        cpus = []
        accounting = self.machine.accounting
        for vcpu in self.machine.cpus:
            counts = accounting.counts(vcpu.index)
            ttbr1 = self.cpu_ttbr1(vcpu.index)
            setup = accounting.setup_counts(vcpu.index)
            cpus.append({
                "cpu": vcpu.index,
                "node": vcpu.node,
                "ttbr1": hexa(ttbr1) if ttbr1 is not None else None,
                "cnp": ttbr1 is not None and decode_ttbr(ttbr1).cnp,
                "online": vcpu.context is not None,
                "powered_on": vcpu.power is PowerState.ON,
                "exit_status": vcpu.exit_status,
                "instructions": counts.instructions,
                "kernel_fetches_by_node": sparse_by_node(counts.kernel_fetches_by_node),
                "fetches_by_node": sparse_by_node(counts.fetches_by_node),
                "remote_filled_kernel_fetches_by_node":
                    sparse_by_node(counts.remote_filled_kernel_fetches_by_node),
                "setup": None if setup is None else setup.to_json(),
                "window": {
                    "opened": setup is not None,
                    "iterations": self.window_iterations(vcpu.index),
                    **accounting.window_counts(vcpu.index).to_json(),
                },
            })  # fmt: skip
        nodes = [
            {"node": node, "pgd": hexa(repl.pgd_phys[node]),
             "text_pa": hexa(repl.node_text_pa(node, image))}
            for node in range(topology.nodes)
        ]  # fmt: skip
        result = self.result
        return {
            "machine": {
                "name": topology.name,
                "nodes": topology.nodes,
                "cpus_per_node": topology.cpus_per_node,
                "granule": self.geometry.granule,
                "va_bits": self.geometry.va_bits,
                "levels": self.geometry.levels,
                "distances": [list(row) for row in topology.distances],
            },
            "layout": boot_layout_report(self.geometry),
            "kernel": {
                # The content, not the path: a report must not depend on the
                # working directory or the cache location (the path is under
                # the report's timings).
                "sha256": self.kernel_sha256,
                "kimage_vaddr": hexa(image.kimage_vaddr),
                "stext": hexa(image.sym("_stext")),
                "etext": hexa(image.sym("_etext")),
                "end_rodata": hexa(image.sym("__end_rodata")),
            },
            "ktext": repl.enabled,
            "ktext_requested": self.spec.ktext,
            "ktext_message": repl.message,
            "kernel_warnings": self.kernel_warnings(),
            "workload": self.spec.workload,
            "syscalls": {str(nr): name for nr, name in sorted(self.kernel.syscalls.items())},
            "user_memory": self.spec.user_memory,
            "is_domain": self.spec.is_domain,
            "cnp": self.cnp_report(),
            "stop_reason": result.reason.value if result else None,
            "instructions": result.instructions if result else 0,
            "window": self.window_summary(cpus),
            "footprint": None if self.footprint is None else footprint_json(self.footprint),
            "cpus": cpus,
            "nodes": nodes,
            "tasks": self.scheduler.report(),
            "migrations": self.scheduler.migrations,
            "checks": {
                "copies_identical": self.copies_identical(),
                "roots_differ_only_in_kernel_slots": self.roots_differ_only_in_kernel_slots(),
                "ttbr1_matches_node": self.ttbr1_matches_node(),
            },
            "cpu_caps": system_cpucaps(self.physmem, image),
            "alternatives_match_caps": not check_alternatives(self.physmem, image,
                                                              repl.text_copies),
            "console": list(self.machine.console),
            "console_cpus": list(self.machine.console_cpus),  # the CPU of each console write
            "console_dropped_bytes": self.machine.firmware.console_dropped_bytes,
            "tasks_finished": all(cpu.power is not PowerState.ON for cpu in self.machine.cpus),
        }

    def window_iterations(self, cpu: int) -> int | None:
        """Iterations ``cpu``'s task ran inside its measurement window: all of
        its ``iterations`` once it opened the window and exited with status 0;
        None when that is not known (still running, failed, or no window)."""
        vcpu = self.machine.cpus[cpu]
        if (not self.machine.accounting.window_opened(cpu) or vcpu.exit_status != 0
                or self.spec.iterations == 0):
            return None
        return self.spec.iterations

    def window_summary(self, cpus: list[dict]) -> dict:
        """The run's measurement window: what the cost compares, apart from boot and set-up."""
        known = workload_defaults(self.spec.workload)
        opened = [cpu for cpu in cpus if cpu["window"]["opened"]]
        counts = [cpu["window"]["iterations"] for cpu in opened]
        return {
            "noun": known.noun if known else "iteration",
            "warmup": self.spec.warmup,
            "cpus_opened": len(opened),
            "iterations": sum(counts) if counts and None not in counts else None,
            "instructions": sum(cpu["window"]["instructions"] for cpu in cpus),
            "setup_instructions": sum(cpu["setup"]["instructions"] for cpu in opened),
        }

    def close(self) -> None:
        """Free the engine, then the RAM it maps (in that order)."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self.machine.close()
        self.physmem.close()

