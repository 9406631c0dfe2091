"""``ktext-emu compare A.json B.json``: what differs between two reports.

Runs are paired in order (the off/on runs of one report with those of the
other).  For each pair it prints the headline figures side by side (local
kernel-fetch share per node, instructions, modelled speed-up and traffic
balance), then every other scalar field that differs.  Timings are ignored:
they differ between any two runs.  The command itself is emu/cli/compare.py.

Reports of version 1 (dense by-node lists) and 2 (sparse objects,
emu/jsonfmt.py) compare alike: a run is read in version 2's shape.  Nothing
here allocates by a count a report claims (``machine.nodes``): only by what
the report holds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from emu.errors import ConfigError, OutputError
from emu.fileio import printable, read_input_file
from emu.jsonfmt import sparse_by_node, sparse_matrix
from emu.report import local_kernel_shares

IGNORED = ("timings", "kernel.path", "console")


# A report read by compare: a 1024-node run with --json is ~400 MB today, but
# json.loads needs several times the text in memory, so larger is refused.
MAX_REPORT_BYTES = 256 << 20
READABLE_VERSIONS = (1, 2)  # "ktext_emu_report"; v2 made by-node figures sparse


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
    except ValueError as err:  # an integer of more digits than Python converts (4300)
        raise ConfigError(f"{shown}: not a ktext-emu report ({str(err).split(':')[0]})") from None
    if not isinstance(report, dict) or not isinstance(report.get("runs"), list):
        raise ConfigError(f"{shown}: not a ktext-emu report (no \"runs\" list)")
    version = report.get("ktext_emu_report", 1)  # absent in reports before versions
    if type(version) is not int or version not in READABLE_VERSIONS:
        told = (str(version) if type(version) is int and abs(version) < 10**12
                else f"of type {type(version).__name__}" if type(version) is not int
                else "(a huge integer)")  # fmt: skip
        raise ConfigError(f"{shown}: report version {told} is not one this ktext-emu reads "
                          f"({', '.join(map(str, READABLE_VERSIONS))})")
    for index, run in enumerate(report["runs"]):
        problem = _run_problem(run)
        if problem:
            raise ConfigError(f"{shown}: runs[{index}]{problem}")
    try:
        report["runs"] = [as_version_2(run) for run in report["runs"]]
        flatten(report["runs"])
    except RecursionError:
        raise ConfigError(f"{shown}: not a ktext-emu report (runs nested too deeply)") from None
    return report


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    """A fetch count: negative ones would make a node's local share exceed 1
    (and overflow a float: 10**400 local of 1 fetch in all)."""
    return _is_int(value) and value >= 0  # type: ignore[operator]


def _count(number: int) -> str:
    """``number`` for a message; thousands of digits (a claim) shortened."""
    text = str(number)
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text)} digits)"


def _node_range(nodes: int) -> str:
    """``(0..N)`` for a message; a claimed count of thousands of digits shortened."""
    return f"(0..{_count(nodes - 1)})"


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
    # Once per run: str() of a claimed count of 4,000 digits takes ~0.2 ms, and
    # per CPU that made 2 MB of report take 26 s.
    digits = len(str(nodes - 1))
    for number, cpu in enumerate(cpus):
        where = f".cpus[{number}]"
        if not isinstance(cpu, dict):
            return f"{where}: not an object"
        if not _is_int(cpu.get("node")) or not 0 <= cpu["node"] < nodes:
            return f"{where}.node: missing or not a node of the machine {_node_range(nodes)}"
        window = cpu.get("window")
        if window and not isinstance(window, dict):
            return f"{where}.window: not an object"
        # The counts headline reads: the window's when there is one (measured_counts).
        for counts, at in ((cpu, where), *(((window, f"{where}.window"),) if window else ())):
            problem = _fetches_problem(counts.get("kernel_fetches_by_node"), nodes, digits)
            if problem:
                return f"{at}.kernel_fetches_by_node: {problem}"
    if "cost" in run and run["cost"] is not None and not isinstance(run["cost"], dict):
        return ".cost: not an object"
    return None


def _fetches_problem(fetches: object, nodes: int, digits: int) -> str | None:
    """What is wrong with a CPU's kernel_fetches_by_node, of either version
    (``digits``: of the machine's last node number)."""
    if isinstance(fetches, dict):  # version 2: {"node": count}, nonzero only
        return _sparse_problem(fetches, nodes, digits)
    # Version 1, one count per node: a report's node count is bounded by the data it holds.
    if (not isinstance(fetches, list) or len(fetches) != nodes
            or not all(_is_count(count) for count in fetches)):
        return (f"missing or not a list of {_count(nodes)} integer(s) >= 0 "
                "or an object of node: integer >= 0")
    return None


def _sparse_problem(entries: dict, nodes: int, digits: int) -> str | None:
    """What is wrong with a version 2 by-node object of integers, if anything."""
    for key, count in entries.items():
        # The length first: int() of a huge digit string is itself the cost.  A
        # key is a node number as written (not "01": by_node would never find it).
        if not (key.isascii() and key.isdigit() and len(key) <= digits
                and (key == "0" or key[0] != "0") and int(key) < nodes):
            return f"key {printable(key[:20])!r} is not a node of the machine {_node_range(nodes)}"
        if not _is_count(count):
            return f"entry {key} is not an integer >= 0"
    return None


def _numbers(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, int | float) and not isinstance(item, bool) for item in value)


def as_version_2(value: object, key: str = "") -> object:
    """A run (or any part of one) in version 2's shape: each ``*_by_node``
    list of numbers sparse, ``traffic_matrix_bytes`` sparse, the cost
    parameters' ``latency_ns`` matrix as ``latency_ns_by_distance``."""
    if isinstance(value, dict):
        out = {name: as_version_2(item, name) for name, item in value.items()}
        if isinstance(out.get("machine"), dict):
            _latency_by_distance(out)
        return out
    if isinstance(value, list):
        if key.endswith("_by_node") and _numbers(value):
            return sparse_by_node(value)
        if key == "traffic_matrix_bytes" and all(_numbers(row) for row in value):
            return sparse_matrix(value)
        return [as_version_2(item) for item in value]
    return value


def _latency_by_distance(run: dict) -> None:
    """Version 1's node x node ``latency_ns`` as version 2's figure per SLIT
    distance, when the run's SLIT and matrix agree in shape; else left as is."""
    parameters = (run.get("cost") or {}).get("parameters") if isinstance(run.get("cost"), dict) \
        else None
    distances = run["machine"].get("distances")
    if not isinstance(parameters, dict) or not isinstance(distances, list):
        return
    latency = parameters.get("latency_ns")
    if not (isinstance(latency, list) and len(latency) == len(distances)
            and all(_numbers(row) and _numbers(slit) and len(row) == len(slit)
                    for row, slit in zip(latency, distances, strict=True))):
        return
    by_distance: dict = {}
    try:
        for row, slit in zip(latency, distances, strict=True):
            for value, distance in zip(row, slit, strict=True):
                by_distance.setdefault(distance, float(value))
    except OverflowError:  # an integer beyond a float's range: no figure to convert
        return
    rebuilt = {}
    for name, item in parameters.items():
        if name == "latency_ns":
            rebuilt["latency_ns_by_distance"] = {
                str(distance): by_distance[distance] for distance in sorted(by_distance)}
        else:
            rebuilt[name] = item
    run["cost"]["parameters"] = rebuilt


# A field's dotted path longer than this is cut and given a digest of the
# whole: each leaf holds its own path, so hostile keys (a chain of 10,000-char
# names over thousands of leaves) made 234 KiB of report into 1.2 GB of paths.
MAX_PATH = 200


def _path(path: str) -> str:
    if len(path) <= MAX_PATH:
        return path
    digest = hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{path[:MAX_PATH - 40]}...#{digest}"


def flatten(value: object, prefix: str = "") -> dict[str, object]:
    """Dotted paths to scalars; lists of numbers stay whole.  Walked with a
    stack (no recursion per level), each path at most ``MAX_PATH`` long."""
    out: dict[str, object] = {}
    pending: list[tuple[str, object]] = [(prefix, value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, dict):
            pending.extend(reversed([(_path(f"{path}.{key}" if path else str(key)), child)
                                     for key, child in item.items()]))
        elif isinstance(item, list) and item and all(isinstance(v, dict) for v in item):
            pending.extend(reversed([(_path(f"{path}[{index}]"), child)
                                     for index, child in enumerate(item)]))
        else:
            out[path] = item
    return out


def same(left: object, right: object) -> bool:
    """Equal as figures: NaN (which JSON readers accept) equals NaN, so a
    report compared with itself shows no difference; lists and objects item
    by item, with a stack of pairs (a value nested as deeply as json.loads
    allows must not exhaust the recursion limit here)."""
    pending = [(left, right)]
    while pending:
        a, b = pending.pop()
        if isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                return False
            pending.extend(zip(a, b, strict=True))
        elif isinstance(a, dict) and isinstance(b, dict):
            if a.keys() != b.keys():
                return False
            pending.extend((a[key], b[key]) for key in a)
        elif isinstance(a, float) and isinstance(b, float) and a != a:
            if b == b:
                return False
        elif a != b:
            return False
    return True


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
    # The nodes that have CPUs in the report, not range(machine.nodes): a claim.
    for node, share in local_kernel_shares(run).items():
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
            mark = " " if same(left, right) else "*"
            lines.append(f"{mark} {key:<34}{_fmt(left):>24}{_fmt(right):>24}")
        flat_a, flat_b = flatten(run_a), flatten(run_b)
        other = [
            key for key in dict.fromkeys([*flat_a, *flat_b])
            if not key.startswith(IGNORED) and not same(flat_a.get(key), flat_b.get(key))
        ]  # fmt: skip
        differences += len(other)
        if other:
            lines.append(f"  {len(other)} other field(s) differ:")
            for key in other[:40]:
                lines.append(f"    {key}: {_fmt(flat_a.get(key))} -> {_fmt(flat_b.get(key))}")
            if len(other) > 40:
                lines.append(f"    ... and {len(other) - 40} more")
    return lines, differences
