"""``ktext-emu compare A.json B.json``: what differs between two reports.

Runs are paired in order (the off/on runs of one report with those of the
other).  For each pair it prints the headline figures side by side (local
kernel-fetch share per node, instructions, modelled speed-up and traffic
balance), then every other scalar field that differs.  Timings are ignored:
they differ between any two runs.  The command itself is emu/cli/compare.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from emu.errors import ConfigError, OutputError
from emu.fileio import printable, read_input_file
from emu.report import local_kernel_share

IGNORED = ("timings", "kernel.path", "console")


# A report read by compare: a 1024-node run with --json is ~400 MB today, but
# json.loads needs several times the text in memory, so larger is refused.
MAX_REPORT_BYTES = 256 << 20


def load_report(path: Path) -> dict:
    """A report file, checked to have what ``compare`` reads (a ConfigError,
    exit 3, naming the first field that is missing or of the wrong kind)."""
    shown = printable(str(path))
    try:
        text = read_input_file(path, MAX_REPORT_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: not a JSON report (not UTF-8 text)") from None
    except OSError as err:
        raise OutputError(f"cannot read {shown}: {err.strerror or err}") from err
    try:
        report = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{shown}:{err.lineno}: not a JSON report ({err.msg})") from err
    except RecursionError:
        raise ConfigError(f"{shown}: not a ktext-emu report (JSON nested too deeply)") from None
    if not isinstance(report, dict) or not isinstance(report.get("runs"), list):
        raise ConfigError(f"{shown}: not a ktext-emu report (no \"runs\" list)")
    for index, run in enumerate(report["runs"]):
        problem = _run_problem(run)
        if problem:
            raise ConfigError(f"{shown}: runs[{index}]{problem}")
    try:
        flatten(report["runs"])
    except RecursionError:
        raise ConfigError(f"{shown}: not a ktext-emu report (runs nested too deeply)") from None
    return report


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _run_problem(run: object) -> str | None:
    """What ``headline`` would trip over in one run, as ``.field: problem``."""
    if not isinstance(run, dict):
        return ": not an object"
    if not isinstance(run.get("ktext"), bool):
        return ".ktext: missing or not true/false"
    machine = run.get("machine")
    if not isinstance(machine, dict):
        return ".machine: missing or not an object"
    for key in ("nodes", "cpus_per_node", "granule", "va_bits"):
        if not _is_int(machine.get(key)) or machine[key] < 1:
            return f".machine.{key}: missing or not a positive integer"
    cpus = run.get("cpus")
    if not isinstance(cpus, list):
        return ".cpus: missing or not a list"
    nodes = machine["nodes"]
    for number, cpu in enumerate(cpus):
        where = f".cpus[{number}]"
        if not isinstance(cpu, dict):
            return f"{where}: not an object"
        if not _is_int(cpu.get("node")) or not 0 <= cpu["node"] < nodes:
            return f"{where}.node: missing or not a node of the machine (0..{nodes - 1})"
        fetches = cpu.get("kernel_fetches_by_node")
        # One count per node: a report's node count is bounded by the data it holds.
        if (not isinstance(fetches, list) or len(fetches) != nodes
                or not all(_is_int(count) for count in fetches)):
            return (f"{where}.kernel_fetches_by_node: missing or not a list of "
                    f"{nodes} integer(s)")
    if "cost" in run and run["cost"] is not None and not isinstance(run["cost"], dict):
        return ".cost: not an object"
    return None


def flatten(value: object, prefix: str = "") -> dict[str, object]:
    """Dotted paths to scalars; lists of numbers stay whole."""
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix: value}


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def headline(run: dict) -> dict[str, object]:
    nodes = run["machine"]["nodes"]
    figures: dict[str, object] = {
        "ktext": run["ktext"],
        "workload": run.get("workload"),
        "machine": f"{run['machine'].get('name', '?')} {nodes}x{run['machine']['cpus_per_node']} "
                   f"{run['machine']['granule'] // 1024}K/{run['machine']['va_bits']}",
        "instructions": run.get("instructions"),
    }  # fmt: skip
    for node in range(nodes):
        share = local_kernel_share(run, node)
        figures[f"node {node} local kernel fetches"] = (
            None if share is None else f"{100 * share:.1f}%"
        )
    cost = run.get("cost")
    if cost:
        figures["modelled cycles"] = cost.get("total_cycles")
        figures["speed-up"] = cost.get("speedup")
        if "balance_max_mean" in cost:
            figures["traffic balance (max/mean)"] = cost["balance_max_mean"]
        else:
            figures["traffic balance (max/min)"] = cost.get("balance")
    return figures


def compare(a: dict, b: dict, name_a: str = "A", name_b: str = "B") -> tuple[list[str], int]:
    """Lines to print, and how many fields differ."""
    lines: list[str] = []
    differences = 0
    if len(a["runs"]) != len(b["runs"]):
        lines.append(f"{name_a} has {len(a['runs'])} run(s), {name_b} has {len(b['runs'])}")
        differences += 1
    for index, (run_a, run_b) in enumerate(zip(a["runs"], b["runs"], strict=False)):
        lines.append(f"run {index}:")
        lines.append(f"  {'':<34}{name_a:>24}{name_b:>24}")
        head_a, head_b = headline(run_a), headline(run_b)
        for key in dict.fromkeys([*head_a, *head_b]):
            left, right = head_a.get(key), head_b.get(key)
            mark = " " if left == right else "*"
            lines.append(f"{mark} {key:<34}{_fmt(left):>24}{_fmt(right):>24}")
        flat_a, flat_b = flatten(run_a), flatten(run_b)
        other = [
            key for key in dict.fromkeys([*flat_a, *flat_b])
            if not key.startswith(IGNORED) and flat_a.get(key) != flat_b.get(key)
        ]  # fmt: skip
        differences += len(other)
        if other:
            lines.append(f"  {len(other)} other field(s) differ:")
            for key in other[:40]:
                lines.append(f"    {key}: {_fmt(flat_a.get(key))} -> {_fmt(flat_b.get(key))}")
            if len(other) > 40:
                lines.append(f"    ... and {len(other) - 40} more")
    return lines, differences
