"""cnp-shared-domain: per-node roots with CnP in one Inner Shareable domain.

With CnP set, PEs of one Inner Shareable domain may share TLB entries for an
ASID: the bit promises their tables are the same.  The series' per-node
roots differ in the kernel slot, and Linux puts every CPU in one domain, so a
CPU can translate kernel text through an entry another node's CPU filled and
run that node's copy.  Remedy: no CnP on a replicated kernel.

Shown for comparison, not as a remedy: one Inner Shareable domain per node,
what the series' commit text assumed (patch 12).  That is a hypothetical
hardware configuration, not one Linux can run on (its broadcast TLBI ...IS
must reach every CPU), so it carries no verdict.
"""

from __future__ import annotations

from emu.hw.tlb import IS_DOMAIN_NODE_CAVEAT
from emu.scenarios.base import (
    MAX_DETAILS,
    Outcome,
    Role,
    Scenario,
    Setup,
    hexa,
    placements,
    run_tasks,
)
from emu.scenarios.guest import ScenarioOp

TASK_ITERATIONS = 200
QUANTUM = 3000


def _outcome(setup: Setup, op: ScenarioOp, domain: str, role: Role, label: str) -> Outcome:
    system = setup.boot(workload="scenario", iterations=TASK_ITERATIONS, quantum=QUANTUM,
                        is_domain=domain)  # fmt: skip
    try:
        run_tasks(system, op)
        rows = placements(system)
        tlbs = system.machine.tlbs
        fills = sorted(tlbs.remote_fills.values(), key=lambda use: (use.cpu, use.va))
        counts = {
            "remote_filled_translations": len(fills),
            "remote_filled_uses": sum(use.uses for use in fills),
            "cpus_using_remote_fills": len({use.cpu for use in fills}),
            "remote_filled_fetches": sum(row.remote_filled_fetches for row in rows),
            "remote_kernel_fetches": sum(row.remote_kernel_fetches for row in rows),
        }
        details = [
            f"CPU {use.cpu} (node {use.node}) used VA {hexa(use.va)} -> PA {hexa(use.pa)} "
            f"(node {use.pa_node}) filled by CPU {use.filled_by} (node {use.filler_node}), "
            f"{use.uses} time(s)"
            for use in fills[:MAX_DETAILS]
        ]
        hazard = bool(fills) or counts["remote_kernel_fetches"] > 0
        summary = (f"{counts['remote_filled_translations']} translations filled on another node "
                   f"used by {counts['cpus_using_remote_fills']} CPUs, "
                   f"{counts['remote_filled_fetches']:,} instructions fetched through them, "
                   f"{counts['remote_kernel_fetches']:,} remote kernel-text fetches")
        return Outcome(role, label, hazard, counts, details, summary)
    finally:
        system.close()


def run(setup: Setup) -> list[Outcome]:
    return [
        _outcome(setup, ScenarioOp.CNP_ENABLE, "machine", Role.HAZARD,
                 "v3: node roots with CnP, one Inner Shareable domain (as Linux assumes)"),
        _outcome(setup, ScenarioOp.CNP_ENABLE, "node", Role.NOTE,
                 "as patch 12's commit text assumed: " + IS_DOMAIN_NODE_CAVEAT),
        _outcome(setup, ScenarioOp.NODE_ROOT, "machine", Role.REMEDY,
                 "no CnP when kernel text is replicated (node roots, CnP clear)"),
    ]  # fmt: skip


SCENARIO = Scenario(
    name="cnp-shared-domain",
    title="per-node roots with CnP in one Inner Shareable domain",
    v3="sets CnP on every node's root; fine only if nodes were separate IS domains (patch 12), "
       "which Linux cannot run on",
    run=run,
)
