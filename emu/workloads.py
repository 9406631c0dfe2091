"""The workloads ktext-emu ships: what each stands for and how it runs.

A workload is an EL0 function ``workload_<name>`` in the kernel image
(``kernel_blob/workloads.S``, or a user's ``--add FILE.S``), started on every
CPU with x0 = task number and x1 = iterations.  This table adds what the
host needs to know about the shipped ones; any other ``workload_<name>`` in
the image runs with the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Workload:
    name: str
    summary: str
    exercises: str
    default_iterations: int
    migrate_every: int = 0  # instructions per CPU between migrations; 0: none
    data_accesses: bool = True  # the cost model charges data accesses too


WORKLOADS: dict[str, Workload] = {
    workload.name: workload
    for workload in (
        Workload(
            "syscall",
            "tight EL0 -> EL1 -> EL0 round trips through the syscall table",
            "exception entry/return, the syscall table (replicated rodata), a small handler "
            "reading rodata and updating shared and per-CPU counters",
            default_iterations=1000,
        ),
        Workload(
            "dbsim",
            "a database-like load: key lookups in a shared hash index, rows copied out of "
            "kernel buffers into user memory, three syscalls per query",
            "kernel text (lookup, copy_to_user-like loop) and rodata replicated per node; "
            "the index and rows are shared data in node 0's memory; user buffers node-local",
            default_iterations=300,
        ),
        Workload(
            "patchstorm",
            "static keys flipped while all CPUs execute the sites: even tasks toggle a key "
            "through the guest's own aarch64_insn_patch_text_nosync, odd tasks run the site",
            "multi-copy text patching (every node's copy through the linear map, cache "
            "maintenance) racing with execution of the patched site on every node",
            default_iterations=200,
        ),
        Workload(
            "migrate",
            "getcpu/null syscalls while the host moves every task to the next node "
            "continuously",
            "a task keeping its virtual PC across nodes and fetching from each node's copy",
            default_iterations=1000,
            migrate_every=5000,
        ),
    )
}


def workload_defaults(name: str) -> Workload | None:
    """The shipped workload called ``name``, or None for a user's own."""
    return WORKLOADS.get(name)
