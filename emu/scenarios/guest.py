"""The guest side of the scenarios: names of the paths kernel_blob/scenarios.S
provides (the scenario syscall's ops, the TLBI forms of ``scenario_tlbi``) and
the host helpers that drive them (set the EL0 task's op, run a kernel
function on a CPU and keep or catch what it does)."""

from __future__ import annotations

import enum

from emu.errors import ElfError
from emu.kernel.image import KernelImage

# scenario_tlbi's forms, in its jump-table order: name -> (CRm, op2) of TLBI
TLBI_FORMS: dict[str, tuple[int, int]] = {
    "vmalle1": (7, 0), "vmalle1is": (3, 0),
    "vae1": (7, 1), "vae1is": (3, 1),
    "aside1": (7, 2), "aside1is": (3, 2),
    "vaae1": (7, 3), "vaae1is": (3, 3),
    "vale1": (7, 5), "vale1is": (3, 5),
    "vaale1": (7, 7), "vaale1is": (3, 7),
    "vmalle1os": (1, 0),  # FEAT_TLBIOS: UNDEFINED on the emulated CPU
    "rvae1is": (2, 1),  # FEAT_TLBIRANGE: UNDEFINED on the emulated CPU
}  # fmt: skip


class ScenarioOp(enum.IntEnum):
    """What sys_scenario (syscall 10) runs on the calling CPU."""

    NOP = 0
    CNP_ENABLE = 1  # cpu_enable_swapper_cnp() as v3 patch 12: node root, CnP
    CNP_ENABLE_UPSTREAM = 2  # before the series: swapper_pg_dir (node 0's root), CnP
    NODE_ROOT = 3  # the node root without CnP
    SUSPEND = 4  # cpu_suspend, resume through cpu_resume (swapper_pg_dir)
    SUSPEND_NODE_ROOT = 5  # cpu_suspend, resume through cpu_resume_node_root


def tlbi_form_index(name: str) -> int:
    return list(TLBI_FORMS).index(name)


def check_image(image: KernelImage) -> None:
    """The kernel's scenarios.S agrees with these tables (ElfError if not)."""
    for symbol, count in (("SCENARIO_OPS", len(ScenarioOp)),
                          ("SCENARIO_TLBI_FORMS", len(TLBI_FORMS))):  # fmt: skip
        if not image.has(symbol) or image.sym(symbol) != count:
            raise ElfError(f"{image.path}: {symbol} is not {count}: not the shipped scenarios.S")
