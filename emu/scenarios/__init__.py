"""The scenario auditor: the REPLICATE_KTEXT series' sharp edges
(ktext-series.md sections 2.3, 2.4, 3), each executed on the emulated machine
with the v3 behaviour and with a remedy, and reported with counts and
addresses.

One module per scenario (each exports ``SCENARIO``); ``SCENARIOS`` is the
registry in report order; ``run_scenarios`` runs a selection.  The guest
side is kernel_blob/scenarios.S (emu/scenarios/guest.py names its paths);
kernel operations after boot are in emu/scenarios/kmodel.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from emu.errors import UsageError
from emu.scenarios import (
    cnp_enable,
    cnp_shared_domain,
    free_initmem,
    kpti_offsets,
    layouts,
    module_slot,
    pgd_propagation,
    suspend_resume,
    writable_replica,
)
from emu.scenarios.base import Outcome, Role, Scenario, ScenarioResult, Setup

SCENARIOS: dict[str, Scenario] = {
    module.SCENARIO.name: module.SCENARIO
    for module in (cnp_enable, cnp_shared_domain, suspend_resume, module_slot,
                   pgd_propagation, free_initmem, writable_replica, kpti_offsets, layouts)
}  # fmt: skip


def select(names: Sequence[str]) -> list[Scenario]:
    """The named scenarios in registry order (all of them for no names)."""
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise UsageError(f"unknown scenario {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(SCENARIOS)})")  # fmt: skip
    wanted = set(names)
    return [s for name, s in SCENARIOS.items() if not wanted or name in wanted]


def run_scenarios(names: Sequence[str] = (), setup: Setup | None = None) -> list[ScenarioResult]:
    setup = setup or Setup()
    return [scenario.execute(setup) for scenario in select(names)]


__all__ = ["SCENARIOS", "Outcome", "Role", "Scenario", "ScenarioResult", "Setup",
           "run_scenarios", "select"]  # fmt: skip
