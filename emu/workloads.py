"""The workloads ktext-emu ships: what each stands for and how it runs.

A workload is an EL0 function ``workload_<name>`` in the kernel image
(``kernel_blob/workloads.S``, the generated ``dbsim`` of emu/blob/synth.py,
or a user's ``--add FILE.S``), started on every CPU with x0 = task number,
x1 = iterations, x2 = tasks and x3 = warm-up iterations.  A task calls
sys_window (``__NR_window``) when its set-up and warm-up are done; the cost
compares what runs after that.  This table adds what the host needs to know
about the shipped ones; any other ``workload_<name>`` in the image runs with
the defaults.
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
    noun: str = "iteration"  # what one iteration is, for "cycles per <noun>"


WORKLOADS: dict[str, Workload] = {
    workload.name: workload
    for workload in (
        Workload(
            "syscall",
            "tight EL0 -> EL1 -> EL0 round trips through the syscall table",
            "exception entry/return, the syscall table (replicated rodata), a small handler "
            "reading rodata and updating shared and per-CPU counters",
            default_iterations=1000,
            noun="syscall",
        ),
        Workload(
            "dbsim",
            "a database-like load with a real footprint: per query a hash-index probe and a "
            "few rows out of MBs of shared user memory, a plan of generated operator "
            "functions (hundreds of KiB of EL0 code over the plans) and three syscalls, each "
            "running a generated kernel path sized like a real arm64 kernel's",
            "kernel text (the generated paths, tens of KiB per query) and rodata replicated "
            "per node, evicted between syscalls by the user code and data; the index and rows "
            "in node 0's memory, built by the tasks before their window opens",
            default_iterations=100,
            noun="query",
        ),
        Workload(
            "dbsim_tiny",
            "the old dbsim, a negative control: key lookups in a shared hash index in kernel "
            "buffers, rows copied out to user memory, three syscalls per query, all of it a "
            "few hundred bytes of text",
            "a kernel path that fits in any L1 (about 100 instructions a syscall): replication "
            "cannot gain much here",
            default_iterations=300,
            noun="query",
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
            noun="round trip",
        ),
    )
}


def workload_defaults(name: str) -> Workload | None:
    """The shipped workload called ``name``, or None for a user's own."""
    return WORKLOADS.get(name)
