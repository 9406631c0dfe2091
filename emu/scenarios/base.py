"""What a scenario is and what it reports: ``Scenario`` (name, what the v3
series does, how to run it), ``Outcome`` (one run: the v3 behaviour, a remedy,
or a note, with its counts and the addresses behind them), ``ScenarioResult``
(the outcomes and the verdict), and ``Setup`` (the machine every scenario
boots unless it needs another).  Also the measurements several scenarios
share: where each CPU's root is and which node its kernel text came from."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from emu.config import machine_config
from emu.errors import GuestFault
from emu.hw.pagetable import decode_ttbr
from emu.scenarios.guest import check_image
from emu.system import RunSpec, System, hexa

DEFAULT_NODES = 2
DEFAULT_CPUS_PER_NODE = 2
MAX_DETAILS = 8  # address lines an outcome keeps (the counts cover the rest)


@dataclass(frozen=True)
class Setup:
    """The machine a scenario boots: node count, CPUs per node, granule, VA bits."""

    nodes: int = DEFAULT_NODES
    cpus_per_node: int = DEFAULT_CPUS_PER_NODE
    granule: int = 4096
    va_bits: int = 48

    def describe(self) -> str:
        return (f"{self.nodes} nodes x {self.cpus_per_node} CPUs, "
                f"{self.granule // 1024}K pages, {self.va_bits}-bit VA")  # fmt: skip

    def boot(self, **spec: object) -> System:
        """A System with replication on, ``spec`` overriding RunSpec fields."""
        config = machine_config(nodes=self.nodes, cpus_per_node=self.cpus_per_node,
                                granule=self.granule, va_bits=self.va_bits)  # fmt: skip
        spec.setdefault("ktext", True)
        system = System(config, RunSpec(**spec))  # type: ignore[arg-type]
        check_image(system.image)
        return system


class Role(enum.Enum):
    HAZARD = "hazard"  # the behaviour that shows the hazard
    REMEDY = "remedy"  # must not show it
    NOTE = "note"  # shown for comparison; no verdict


@dataclass
class Outcome:
    """One run of a scenario."""

    role: Role
    label: str  # what ran: "v3 series", "remedy: ...", ...
    hazard: bool  # whether the hazard showed
    counts: dict[str, int]
    details: list[str] = field(default_factory=list)  # addresses and who saw what
    summary: str = ""  # one line for the table

    def to_json(self) -> dict:
        return {"role": self.role.value, "label": self.label, "hazard": self.hazard,
                "counts": dict(self.counts), "summary": self.summary,
                "details": list(self.details)}  # fmt: skip


@dataclass
class ScenarioResult:
    name: str
    title: str
    v3: str  # what the v3 series does
    setup: str
    outcomes: list[Outcome]
    seconds: float = 0.0

    @property
    def hazard_outcome(self) -> Outcome:
        return next(o for o in self.outcomes if o.role is Role.HAZARD)

    @property
    def remedies(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.role is Role.REMEDY]

    @property
    def hazard_seen(self) -> bool:
        return self.hazard_outcome.hazard

    @property
    def remedies_hold(self) -> bool:
        """Every remedy removes the hazard."""
        return all(not remedy.hazard for remedy in self.remedies)

    @property
    def verdict(self) -> str:
        if not self.remedies_hold:
            return "REMEDY FAILS"
        if not self.hazard_seen:
            return "hazard not seen"
        return "remedied"

    def to_json(self) -> dict:
        return {
            "scenario": self.name,
            "title": self.title,
            "v3": self.v3,
            "setup": self.setup,
            "hazard_seen": self.hazard_seen,
            "remedies_hold": self.remedies_hold,
            "verdict": self.verdict,
            "outcomes": [outcome.to_json() for outcome in self.outcomes],
        }


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    v3: str
    run: Callable[[Setup], list[Outcome]]

    def execute(self, setup: Setup) -> ScenarioResult:
        started = time.perf_counter()
        outcomes = self.run(setup)
        roles = [outcome.role for outcome in outcomes]
        if roles.count(Role.HAZARD) != 1:
            raise ValueError(f"scenario {self.name} must have exactly one hazard outcome")
        return ScenarioResult(self.name, self.title, self.v3, setup.describe(), outcomes,
                              time.perf_counter() - started)


# ------------------------------------------------------------ measurements


def node_of_root(system: System, ttbr1: int | None) -> int | None:
    """The node whose replication root ``ttbr1`` points at (None: none of them)."""
    if ttbr1 is None:
        return None
    roots = system.kernel.replication.pgd_phys
    base = decode_ttbr(ttbr1).baddr
    return roots.index(base) if base in roots else None


@dataclass(frozen=True)
class CpuPlacement:
    """Where one CPU ended up and where its kernel text came from."""

    cpu: int
    node: int
    ttbr1: int | None
    root_node: int | None  # node of the root its TTBR1 points at
    kernel_fetches: int
    remote_kernel_fetches: int  # kernel text fetched from another node's memory
    remote_filled_fetches: int  # fetched through a TLB entry another node's CPU filled

    @property
    def off_node_root(self) -> bool:
        return self.root_node is not None and self.root_node != self.node


def placements(system: System) -> list[CpuPlacement]:
    rows = []
    for vcpu in system.machine.cpus:
        counts = system.machine.accounting.counts(vcpu.index)
        kernel = counts.kernel_fetches_by_node
        ttbr1 = system.cpu_ttbr1(vcpu.index)
        rows.append(CpuPlacement(
            vcpu.index, vcpu.node, ttbr1, node_of_root(system, ttbr1), sum(kernel),
            sum(kernel) - kernel[vcpu.node], counts.remote_filled_fetches,
        ))  # fmt: skip
    return rows


def placement_counts(rows: list[CpuPlacement]) -> dict[str, int]:
    return {
        "cpus_off_node_root": sum(row.off_node_root for row in rows),
        "remote_kernel_fetches": sum(row.remote_kernel_fetches for row in rows),
        "kernel_fetches": sum(row.kernel_fetches for row in rows),
    }


def placement_details(rows: list[CpuPlacement]) -> list[str]:
    lines = []
    for row in rows:
        if not (row.off_node_root or row.remote_kernel_fetches):
            continue
        root = "no replication root" if row.root_node is None else f"node {row.root_node}'s root"
        lines.append(
            f"CPU {row.cpu} (node {row.node}): TTBR1 {hexa(row.ttbr1 or 0)} = {root}; "
            f"{row.remote_kernel_fetches:,} of {row.kernel_fetches:,} kernel-text fetches remote"
        )
    return lines[:MAX_DETAILS]


def run_tasks(system: System, op: int) -> None:
    """Every CPU's EL0 task runs scenario op ``op`` once, then its null syscalls."""
    image = system.image
    system.physmem.write_u64(image.pa_of(image.sym("scenario_op")), op)
    result = system.run()
    failed = [(vcpu.index, vcpu.exit_status) for vcpu in system.machine.cpus
              if vcpu.exit_status not in (0, None)]  # fmt: skip
    if result.reason.name != "ALL_OFF" or failed:
        raise GuestFault(f"scenario tasks did not finish cleanly ({result.reason.value}; "
                         f"exit status per CPU {failed})")  # fmt: skip


def placement_outcome(system: System, op: int, role: Role, label: str) -> Outcome:
    """Run every CPU's task with ``op``, then judge where the CPUs ended up: the
    hazard is a CPU left on another node's root or any remote kernel-text fetch."""
    run_tasks(system, op)
    rows = placements(system)
    counts = placement_counts(rows)
    hazard = counts["cpus_off_node_root"] > 0 or counts["remote_kernel_fetches"] > 0
    summary = (f"{counts['cpus_off_node_root']} CPUs left on another node's root, "
               f"{counts['remote_kernel_fetches']:,} remote kernel-text fetches")  # fmt: skip
    return Outcome(role, label, hazard, counts, placement_details(rows), summary)
