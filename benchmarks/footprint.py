"""What a workload executes inside its measurement window, measured with a code hook.

    python3 -m benchmarks.footprint [--workload dbsim] [--iterations 20] [--json PATH]

Runs the workload on a one-CPU machine, and from the moment the task opens its
window records every instruction (Unicorn code hook) and every user data read
and write (memory hooks): per syscall (x8 at the exception entry) the
instructions retired in the kernel, the distinct kernel text bytes, 64-byte
lines and functions (symbols) it ran; per iteration the distinct kernel text,
user code and user data lines; and the unions over the window.  This is the
check of the generated footprint against its defaults (emu/blob/footprint_data.py),
measured the way issue 12 measured the old kernel.  Slow (a Python call per
instruction): keep iterations small.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE
from unicorn.arm64_const import UC_ARM64_REG_X8

from emu.config import machine_config
from emu.fileio import atomic_write_text
from emu.system import RunSpec, System
from emu.workloads import workload_defaults

LINE = 64


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "min": 0.0, "max": 0.0}
    return {"mean": round(statistics.fmean(values), 1), "min": min(values), "max": max(values)}


def measure(workload: str = "dbsim", iterations: int = 20, spec: dict | None = None) -> dict:
    """Footprint figures of ``workload`` (one CPU, ``iterations`` after its window opens)."""
    system = System(machine_config("default", 1, 1), RunSpec(workload=workload, iterations=iterations,
                                                             **(spec or {})))  # fmt: skip
    image = system.image
    stext, etext = image.sym("_stext"), image.sym("_etext")
    kernel = system.kernel
    calls: list[dict] = []  # one per syscall: number, instructions, pcs
    user_pcs: list[set[int]] = [set()]
    user_lines: list[set[int]] = [set()]
    kernel_pcs_iter: list[set[int]] = [set()]
    state = {"in_kernel": False, "call": None}
    iteration_syscall = {"syscall": 2, "dbsim_tiny": 2, "migrate": 2}.get(workload)

    def on_code(uc, address: int, size: int, _user: object) -> None:
        if stext <= address < etext:
            if not state["in_kernel"]:
                state["in_kernel"] = True
                state["call"] = {"nr": uc.reg_read(UC_ARM64_REG_X8), "instructions": 0, "pcs": set()}
                calls.append(state["call"])
            call = state["call"]
            call["instructions"] += 1
            call["pcs"].add(address)
            kernel_pcs_iter[-1].add(address)
            return
        if address >> 63:
            return  # other kernel code (none runs in a window but the vectors' targets)
        if state["in_kernel"]:
            state["in_kernel"] = False
            # An iteration ends after its last syscall: the workload's own or
            # (dbsim) the last generated path of a query.
            nr = state["call"]["nr"]
            last = iteration_syscall if iteration_syscall is not None else (
                image.sym("__NR_synth_base") + (system.footprint.syscalls_per_iter - 1))
            if nr == last:
                user_pcs.append(set())
                user_lines.append(set())
                kernel_pcs_iter.append(set())
        user_pcs[-1].add(address)

    def on_mem(uc, access: int, address: int, size: int, value: int, _user: object) -> None:
        if not address >> 63:
            user_lines[-1].add(address // LINE)

    def start(_cpu: object) -> None:
        uc = system.machine.uc
        uc.hook_add(UC_HOOK_CODE, on_code)
        uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, on_mem)
        uc.ctl_flush_tb()

    system.machine.window_listeners.append(start)
    system.run()
    # The call into sys_window itself opened the window mid-call; drop it and the exit.
    calls = [c for c in calls if c["nr"] not in (image.sym("__NR_window"), image.sym("__NR_exit"))]
    by_nr: dict[int, list[dict]] = defaultdict(list)
    for call in calls:
        by_nr[call["nr"]].append(call)
    per_syscall = {}
    for nr, group in sorted(by_nr.items()):
        per_syscall[str(nr)] = {
            "calls": len(group),
            "instructions_per_call": _summary([c["instructions"] for c in group]),
            "text_bytes_per_call": _summary([4 * len(c["pcs"]) for c in group]),
            "lines_per_call": _summary([len({pc // LINE for pc in c["pcs"]}) for c in group]),
            "functions_per_call": _summary([len({kernel.symbolize(pc).split("+")[0]
                                                 for pc in c["pcs"]}) for c in group]),
        }  # fmt: skip
    complete = slice(0, max(1, len(user_pcs) - 1))  # the last entry is the exit's tail
    all_kernel = set().union(*(c["pcs"] for c in calls)) if calls else set()
    result = {
        "workload": workload,
        "iterations": iterations,
        "footprint": None if system.footprint is None else {
            k: v for k, v in vars(system.footprint).items() if k != "sources"},
        "kernel_text": {"start": f"{stext:#x}", "bytes": etext - stext},
        "syscalls": per_syscall,
        "per_iteration": {
            "kernel_text_bytes": _summary([4 * len(s) for s in kernel_pcs_iter[complete]]),
            "user_code_bytes": _summary([4 * len(s) for s in user_pcs[complete]]),
            "user_data_bytes": _summary([LINE * len(s) for s in user_lines[complete]]),
        },
        "union": {
            "kernel_text_bytes": 4 * len(all_kernel),
            "kernel_lines": len({pc // LINE for pc in all_kernel}),
            "user_code_bytes": 4 * len(set().union(*user_pcs)),
            "user_data_bytes": LINE * len(set().union(*user_lines)),
        },
    }
    system.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="dbsim")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    known = workload_defaults(args.workload)
    iterations = args.iterations or min(20, known.default_iterations if known else 20)
    result = measure(args.workload, iterations)
    text = json.dumps(result, indent=2) + "\n"
    if args.json:
        atomic_write_text(args.json, text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
