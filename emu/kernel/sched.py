"""Tasks and migration: which task runs on which CPU, and moving tasks
between nodes every N instructions of each CPU's time (``--migrate-every``).

The synthetic kernel runs one task per CPU and never schedules by itself;
the host plays the scheduler's load balancer.  A task is everything a
context switch moves (general registers, PC, PSTATE, both stack pointers
and the exception registers); the CPU keeps what is per CPU (TTBR1 with its
node's root, TPIDR_EL1, VBAR, TCR, SCTLR).  A task may be moved at any
instruction, in user or kernel mode: it keeps its virtual PC, and its next
kernel fetch comes from the new node's copy.  Per-task fetch counts follow
the task across CPUs.

Only a CPU running its task takes part: one seen at EL0, or with its task's
user stack in SP_EL0 (the boot path, primary or secondary, ends in
``cpu_startup_common``, which sets SP_EL0 from ``task_user_sp`` just
before it drops to the task; it is 0 from reset until then).  A CPU still on its boot path has no task to move, and its
boot state (MMU off, no vectors, no per-CPU area yet) must not be moved
onto another CPU, as Linux never migrates a CPU's idle/boot thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from unicorn.arm64_const import (
    UC_ARM64_REG_ELR_EL1,
    UC_ARM64_REG_ESR_EL1,
    UC_ARM64_REG_FAR_EL1,
    UC_ARM64_REG_NZCV,
    UC_ARM64_REG_PC,
    UC_ARM64_REG_PSTATE,
    UC_ARM64_REG_SP,
    UC_ARM64_REG_SP_EL0,
    UC_ARM64_REG_SP_EL1,
    UC_ARM64_REG_TPIDR_EL0,
    UC_ARM64_REG_TTBR0_EL1,
    UC_ARM64_REG_X0,
    UC_ARM64_REG_X29,
    UC_ARM64_REG_X30,
)

from emu.hw.cpu import SPSR_EL1, PowerState, VCpu, read_sysreg, write_sysreg
from emu.hw.machine import Machine
from emu.jsonfmt import sparse_by_node

_GPRS = [UC_ARM64_REG_X0 + i for i in range(29)] + [UC_ARM64_REG_X29, UC_ARM64_REG_X30]
# Written in this order: PSTATE before the stack pointers, and SPSR (a system
# register) last, because that write makes Unicorn recompute the current EL.
_TASK_REGS = [
    *_GPRS, UC_ARM64_REG_PC, UC_ARM64_REG_PSTATE, UC_ARM64_REG_NZCV, UC_ARM64_REG_SP,
    UC_ARM64_REG_SP_EL0, UC_ARM64_REG_SP_EL1, UC_ARM64_REG_ELR_EL1, UC_ARM64_REG_ESR_EL1,
    UC_ARM64_REG_FAR_EL1, UC_ARM64_REG_TPIDR_EL0, UC_ARM64_REG_TTBR0_EL1,
]  # fmt: skip


@dataclass
class Task:
    """A workload thread; ``cpu`` is where it runs now."""

    tid: int
    cpu: int
    history: list[int] = field(default_factory=list)  # every CPU it ran on, in order
    # {node: fetches} of the nodes it fetched from: a task touches a few of
    # up to 1024 nodes
    kernel_fetches_by_node: dict[int, int] = field(default_factory=dict)
    fetches_by_node: dict[int, int] = field(default_factory=dict)


class Scheduler:
    """One task per CPU at boot; moves tasks across nodes on request."""

    def __init__(self, machine: Machine, migrate_every: int = 0) -> None:
        self.machine = machine
        self.migrate_every = migrate_every
        self.tasks = [Task(cpu.index, cpu.index, [cpu.index]) for cpu in machine.cpus]
        self.task_on_cpu = list(range(len(machine.cpus)))
        self.migrations = 0
        self._ran_since_migration = 0
        # CPUs seen running their task (at EL0) at some migration point.
        self._in_task = [False] * len(machine.cpus)
        if migrate_every:
            # A quantum never outlasts the migration period.
            machine.quantum = min(machine.quantum, migrate_every)
        self._snapshot = [self._cpu_counts(cpu.index) for cpu in machine.cpus]

    def _cpu_counts(self, cpu: int) -> tuple[dict[int, int], dict[int, int]]:
        return self.machine.accounting.fetches_touched(cpu)

    def charge(self) -> None:
        """Give each task the fetches its CPU made since the last charge."""
        for cpu in self.machine.cpus:
            now = self._cpu_counts(cpu.index)
            task = self.tasks[self.task_on_cpu[cpu.index]]
            for counts_now, counts_then, charged in zip(
                    now, self._snapshot[cpu.index],
                    (task.kernel_fetches_by_node, task.fetches_by_node), strict=True):
                # A counter can also fall back (a block an exception cut short
                # is uncounted), to zero even: every node of either snapshot.
                for node in counts_now.keys() | counts_then.keys():
                    delta = counts_now.get(node, 0) - counts_then.get(node, 0)
                    if delta:
                        charged[node] = charged.get(node, 0) + delta
            self._snapshot[cpu.index] = now

    def on_round(self) -> None:
        """Machine.run's per-round callback: every CPU has had one more quantum;
        migrate once each has had ``migrate_every`` instructions of time."""
        self._ran_since_migration += self.machine.quantum
        if self.migrate_every and self._ran_since_migration >= self.migrate_every:
            self._ran_since_migration = 0
            self.migrate()

    def migrate(self) -> int:
        """Move tasks to the next node; returns how many tasks moved.

        CPUs that hold the same position within their nodes form a ring
        across nodes, and each ring of running CPUs rotates by one: every
        move crosses a node boundary and no task is lost or duplicated.
        CPUs that are off, waiting in wfi or still booting take no part.
        """
        machine = self.machine
        topology = machine.topology
        if topology.nodes < 2:
            return 0
        self.charge()
        machine.save_current()
        rings: dict[int, list[int]] = {}
        for cpu in machine.cpus:
            if (cpu.power is PowerState.ON and not cpu.waiting and cpu.context is not None
                    and self._task_started(cpu)):
                rings.setdefault(cpu.index % topology.cpus_per_node, []).append(cpu.index)
        moves = 0
        placement = list(self.task_on_cpu)
        for ring in rings.values():
            if len(ring) < 2:
                continue
            states = [self._read_task(cpu) for cpu in ring]
            for position, source in enumerate(ring):
                target = ring[(position + 1) % len(ring)]
                self._write_task(target, states[position])
                placement[target] = self.task_on_cpu[source]
                moves += 1
        self.task_on_cpu = placement
        for cpu, tid in enumerate(self.task_on_cpu):
            task = self.tasks[tid]
            if task.cpu != cpu:
                task.cpu = cpu
                task.history.append(cpu)
        machine.current = None  # the engine holds a stale context now
        if moves:
            self.migrations += 1
        return moves

    def _task_started(self, cpu: VCpu) -> bool:
        """Whether ``cpu`` has left its boot path for its task (see the module doc)."""
        if not self._in_task[cpu.index]:
            context = cpu.context
            at_el0 = (context.reg_read(UC_ARM64_REG_PSTATE) >> 2) & 3 == 0
            self._in_task[cpu.index] = at_el0 or context.reg_read(UC_ARM64_REG_SP_EL0) != 0
        return self._in_task[cpu.index]

    def _read_task(self, cpu: int) -> list[int]:
        uc = self.machine.uc
        uc.context_restore(self.machine.cpus[cpu].context)
        return [uc.reg_read(reg) for reg in _TASK_REGS] + [read_sysreg(uc, SPSR_EL1)]

    def _write_task(self, cpu: int, state: list[int]) -> None:
        uc = self.machine.uc
        context = self.machine.cpus[cpu].context
        uc.context_restore(context)
        for reg, value in zip(_TASK_REGS, state, strict=False):
            uc.reg_write(reg, value)
        write_sysreg(uc, SPSR_EL1, state[-1])
        uc.context_update(context)

    def report(self) -> list[dict]:
        self.charge()
        return [
            {
                "task": task.tid,
                "cpu": task.cpu,
                "cpu_history": list(task.history),
                "kernel_fetches_by_node": sparse_by_node(task.kernel_fetches_by_node),
                "fetches_by_node": sparse_by_node(task.fetches_by_node),
            }
            for task in self.tasks
        ]
