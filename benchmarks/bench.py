"""ktext-emu's benchmark suite: one command, one table, one JSON file.

    python3 -m benchmarks.bench [--short] [--json PATH]

Measures, in one run, side by side (the machine is shared and noisy, so every
speed is also given as a ratio to a baseline measured in the same run):

- the baseline: the same guest and the same instruction stream with only the
  hooks any emulator of this kernel needs (the MMU's TLB fill and exception
  entry) and no accounting; and raw Unicorn on a register/memory loop with no
  hooks at all, for scale;
- the accounting alone (fetch and data counts), on the syscall, dbsim and
  dbsim_tiny workloads; fast mode (`run --detail fast`: the counts and one
  simulated cache hierarchy) and detailed mode (`--detail cache`: every
  structural variant of the preset) on the same workloads;
- boot-and-replicate time and resident memory for 1, 4, 16 and 64 nodes of
  4 CPUs, for each layout (each in a fresh process);
- emulated instructions per second for 2, 8, 32, 128 and 256 CPUs;
- host time of one patch_text_nosync for 1, 4, 16 and 64 nodes;
- one whole comparison (both runs, band, JSON text) at 64, 256 and 1024
  nodes of 4 CPUs (4 and 64 with --short): time, peak RSS and report size,
  each also per node, in a fresh process.

Timings are medians of ``--repeat`` runs.  Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from emu.config import machine_config
from emu.fileio import atomic_write_text
from emu.kernel.layout import LAYOUTS
from emu.system import RunSpec, System

Row = dict[str, object]


def _median_time(action: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def raw_unicorn_mips(instructions: int) -> float:
    """Unicorn alone: a load/xor/add/store loop, no hooks, flat memory."""
    from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc
    from unicorn.arm64_const import UC_ARM64_REG_X3

    from emu.blob.asm import assemble_source

    source = """
        mov x0, #0
        movz x1, #0x4, lsl #16
        movk x1, #0x8000
    1:  ldr x2, [x1]
        eor x2, x2, x0
        add x0, x0, #1
        str x2, [x1, #8]
        cmp x0, x3
        b.ne 1b
        nop
    """
    code = bytes(assemble_source(source, "<bench>").sections[".text"].data)
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.mem_map(0x40000, 0x10000)
    uc.mem_write(0x40000, code)
    iterations = instructions // 6
    uc.reg_write(UC_ARM64_REG_X3, iterations)
    start = time.perf_counter()
    uc.emu_start(0x40000, 0x40000 + len(code) - 4)
    return iterations * 6 / (time.perf_counter() - start) / 1e6


def _system(workload: str, iterations: int, nodes: int = 4, cpus: int = 2, **spec: object) -> System:
    config = machine_config("default", nodes, cpus)
    return System(config, RunSpec(ktext=True, workload=workload, iterations=iterations, **spec))


def _run_speed(workload: str, iterations: int, repeat: int, **spec: object) -> tuple[float, int]:
    """(median seconds, instructions) of a full run of ``workload``."""

    def once() -> tuple[float, int]:
        system = _system(workload, iterations, **spec)
        start = time.perf_counter()
        result = system.run()
        elapsed = time.perf_counter() - start
        system.close()
        return elapsed, result.instructions

    samples = [once() for _ in range(repeat)]
    instructions = samples[0][1]
    return statistics.median(s[0] for s in samples), instructions


def speed_rows(short: bool, repeat: int) -> list[Row]:
    rows: list[Row] = []
    # dbsim is the generated workload with real footprints (MBs of set-up
    # included in the run); dbsim_tiny is what dbsim meant before.
    iterations = {"syscall": 2000 if short else 40000, "dbsim": 50 if short else 1000,
                  "dbsim_tiny": 200 if short else 4000}
    for workload, count in iterations.items():
        # The baseline counts nothing, so its instruction count comes from the
        # fast run of the same (deterministic) stream.
        base_s, _ = _run_speed(workload, count, repeat, count_fetches=False)
        counts_s, fast_instructions = _run_speed(workload, count, repeat, data_accesses=True)
        fast_s = _detailed_time(workload, count, repeat, detail="fast")
        detailed_s = _detailed_time(workload, count, repeat, detail="cache")
        row: Row = {
            "workload": workload,
            "instructions": fast_instructions,
            "baseline_mips": fast_instructions / base_s / 1e6,
            # the accounting alone (fetch and data counts, no cache model)
            "counts_mips": fast_instructions / counts_s / 1e6,
            "counts_vs_baseline": base_s / counts_s,
        }
        if fast_s is not None:
            # `run --detail fast`: the counts and one simulated hierarchy
            row["fast_mips"] = fast_instructions / fast_s / 1e6
            row["fast_vs_baseline"] = base_s / fast_s
        if detailed_s is not None:
            # `run --detail cache`: every structural variant of the preset
            row["detailed_mips"] = fast_instructions / detailed_s / 1e6
            row["detailed_vs_baseline"] = base_s / detailed_s
        rows.append(row)
    return rows


def _detailed_time(workload: str, iterations: int, repeat: int, detail: str) -> float | None:
    try:
        from emu.hw.cachemodel import attach_cache_model
    except ImportError:
        return None
    times = []
    for _ in range(repeat):
        system = _system(workload, iterations, data_accesses=True)
        attach_cache_model(system, detail=detail)
        start = time.perf_counter()
        system.run()
        times.append(time.perf_counter() - start)
        system.close()
    return statistics.median(times)


_BOOT_PROBE = """
import json, resource, sys, time
from emu.config import machine_config
from emu.system import RunSpec, System
granule, va_bits, nodes = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
config = machine_config("default", nodes, 4, granule=granule, va_bits=va_bits)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
system = System(config, RunSpec(ktext=True, iterations=1))
boot = time.perf_counter() - start
system.run()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pm = system.physmem
print(json.dumps({"boot_s": boot, "rss_kib": after, "rss_growth_kib": after - before,
                  "allocated_bytes": pm.allocated_bytes(),
                  "copy_bytes": system.kernel.replication.copy_size,
                  "ktext": system.kernel.replication.enabled}))
"""


def boot_rows(short: bool) -> list[Row]:
    rows: list[Row] = []
    layouts = ["4k-48"] if short else list(LAYOUTS)
    for name in layouts:
        geometry = LAYOUTS[name]
        for nodes in ([1, 4] if short else [1, 4, 16, 64]):
            env = dict(os.environ)
            out = subprocess.run(
                [sys.executable, "-c", _BOOT_PROBE, str(geometry.granule),
                 str(geometry.va_bits), str(nodes)],
                capture_output=True, text=True, env=env, check=False,
            )  # fmt: skip
            if out.returncode != 0:
                rows.append({"layout": name, "nodes": nodes, "error": out.stderr.strip()[-200:]})
                continue
            probe = json.loads(out.stdout)
            rows.append({"layout": name, "nodes": nodes, "cpus": nodes * 4, **probe})
    return rows


# One whole `ktext-emu run` comparison (both runs, the band, the JSON text)
# in a fresh process, so its peak RSS is its own.
_SCALE_PROBE = """
import json, resource, sys, time
from emu.api import run_comparison
from emu.jsonfmt import dumps
from emu.run_options import RunOptions
start = time.perf_counter()
report = run_comparison(RunOptions(nodes=int(sys.argv[1]), cpus_per_node=4,
                                   workload="syscall", iterations=2))
text = dumps(report.to_json())
print(json.dumps({"seconds": time.perf_counter() - start, "complete": report.complete,
                  "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "json_bytes": len(text.encode())}))
"""


def scale_rows(short: bool) -> list[Row]:
    """Issue 17 item 8: a comparison's time, peak memory and report size per
    node, up to the documented maximum of 1024 nodes (4 CPUs each)."""
    rows: list[Row] = []
    for nodes in ([4, 64] if short else [64, 256, 1024]):
        out = subprocess.run([sys.executable, "-c", _SCALE_PROBE, str(nodes)],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            rows.append({"nodes": nodes, "error": out.stderr.strip()[-200:]})
            continue
        probe = json.loads(out.stdout)
        rows.append({"nodes": nodes, "cpus": 4 * nodes, **probe,
                     "ms_per_node": probe["seconds"] / nodes * 1e3,
                     "mib_per_node": probe["rss_kib"] / 1024 / nodes})  # fmt: skip
    return rows


def _timed_run(nodes: int, cpus_per_node: int, iterations: int) -> tuple[float, int]:
    config = machine_config("default", nodes, cpus_per_node)
    system = System(config, RunSpec(ktext=True, workload="syscall", iterations=iterations))
    start = time.perf_counter()
    result = system.run()
    elapsed = time.perf_counter() - start
    system.close()
    return elapsed, result.instructions


def scaling_rows(short: bool, repeat: int) -> list[Row]:
    rows: list[Row] = []
    per_cpu = 2000 if short else 100_000  # instructions of work per CPU
    for cpus in ([2, 8] if short else [2, 8, 32, 128, 256]):
        nodes = max(1, cpus // 4) if cpus >= 4 else 1
        per_node = cpus // nodes
        iterations = max(1, per_cpu // 110)

        samples = [_timed_run(nodes, per_node, iterations) for _ in range(repeat)]
        elapsed = statistics.median(s[0] for s in samples)
        instructions = samples[0][1]
        rows.append({"cpus": cpus, "nodes": nodes, "instructions": instructions,
                     "mips": instructions / elapsed / 1e6,
                     "ns_per_instruction": elapsed / instructions * 1e9})  # fmt: skip
    first = rows[0]["ns_per_instruction"]
    for row in rows:
        row["cost_vs_2_cpus"] = row["ns_per_instruction"] / first
    return rows


def patch_rows(short: bool, repeat: int) -> list[Row]:
    try:
        from emu.kernel.insn import aarch64_insn_gen_nop
        from emu.kernel.patching import patch_text_nosync
    except ImportError as err:
        return [{"error": f"patching API not available: {err}"}]
    rows: list[Row] = []
    for nodes in ([1, 4] if short else [1, 4, 16, 64]):
        config = machine_config("default", nodes, 1)
        system = System(config, RunSpec(ktext=True, iterations=5))
        system.run()
        site = system.image.sym("sys_ni_syscall")
        original = system.physmem.read_u64(system.image.pa_of(site)) & 0xFFFFFFFF
        insns = [aarch64_insn_gen_nop(), original]
        samples = []
        for attempt in range(repeat * 20):
            start = time.perf_counter()
            patch_text_nosync(system, site, insns[attempt % 2])
            samples.append(time.perf_counter() - start)
        rows.append({"nodes": nodes, "patch_us": statistics.median(samples) * 1e6})
        system.close()
    return rows


def format_table(result: dict) -> str:
    lines = [f"ktext-emu benchmark ({result['mode']}) on {result['host']['machine']}, "
             f"{result['host']['cpus']} cores, Python {result['host']['python']}", ""]
    lines.append(f"raw Unicorn (register/memory loop, no hooks): {result['raw_unicorn_mips']:.0f} M instr/s")
    lines.append("")
    lines.append(f"{'workload':<10}{'instr':>12}{'baseline':>12}{'counts':>10}{'cnt/base':>10}"
                 f"{'fast':>10}{'fast/base':>11}{'detailed':>10}{'det/base':>10}   (M instr/s)")
    for row in result["speed"]:
        lines.append(
            f"{row['workload']:<10}{row['instructions']:>12,}{row['baseline_mips']:>12.1f}"
            f"{row['counts_mips']:>10.1f}{row['counts_vs_baseline']:>10.2f}"
            f"{row.get('fast_mips', float('nan')):>10.1f}"
            f"{row.get('fast_vs_baseline', float('nan')):>11.2f}"
            f"{row.get('detailed_mips', float('nan')):>10.1f}"
            f"{row.get('detailed_vs_baseline', float('nan')):>10.2f}"
        )
    lines += ["", f"{'cpus':>6}{'nodes':>7}{'M instr/s':>11}{'ns/instr':>10}{'vs 2 CPUs':>11}"]
    for row in result["scaling"]:
        lines.append(f"{row['cpus']:>6}{row['nodes']:>7}{row['mips']:>11.1f}"
                     f"{row['ns_per_instruction']:>10.1f}{row['cost_vs_2_cpus']:>11.2f}")
    lines += ["", f"{'layout':<8}{'nodes':>6}{'boot s':>9}{'RSS MiB':>9}{'guest alloc MiB':>17}"]
    for row in result["boot"]:
        if "error" in row:
            lines.append(f"{row['layout']:<8}{row['nodes']:>6}  error: {row['error']}")
            continue
        lines.append(f"{row['layout']:<8}{row['nodes']:>6}{row['boot_s']:>9.3f}"
                     f"{row['rss_kib'] / 1024:>9.1f}{row['allocated_bytes'] / 2**20:>17.2f}")
    lines += ["", "whole comparison (syscall, 4 CPUs per node, --iterations 2, both runs, JSON):",
              f"{'nodes':>6}{'seconds':>9}{'ms/node':>9}{'RSS MiB':>9}{'MiB/node':>10}"
              f"{'JSON MB':>9}"]
    for row in result["scale"]:
        if "error" in row:
            lines.append(f"{row['nodes']:>6}  error: {row['error']}")
            continue
        lines.append(f"{row['nodes']:>6}{row['seconds']:>9.2f}{row['ms_per_node']:>9.1f}"
                     f"{row['rss_kib'] / 1024:>9.0f}{row['mib_per_node']:>10.2f}"
                     f"{row['json_bytes'] / 1e6:>9.1f}")
    lines += ["", f"{'nodes':>6}{'patch_text_nosync us':>22}"]
    for row in result["patch"]:
        if "error" in row:
            lines.append(f"  {row['error']}")
            continue
        lines.append(f"{row['nodes']:>6}{row['patch_us']:>22.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="a few seconds (what CI runs)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per timing (median)")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    repeat = args.repeat or (1 if args.short else 3)
    result = {
        "mode": "short" if args.short else "full",
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
                 "python": platform.python_version(), "platform": platform.platform()},
        "raw_unicorn_mips": raw_unicorn_mips(3_000_000 if args.short else 60_000_000),
        "speed": speed_rows(args.short, repeat),
        "scaling": scaling_rows(args.short, repeat),
        "boot": boot_rows(args.short),
        "patch": patch_rows(args.short, repeat),
        "scale": scale_rows(args.short),
    }  # fmt: skip
    print(format_table(result))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
