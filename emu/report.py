"""The report a run produces: the ``{"runs": [RUN, ...]}`` JSON document and
the table printed for people.

Results and timings are kept apart: everything under ``runs`` depends only on
the inputs (byte-identical from one run to the next); host timings go under
``timings``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from emu.fileio import atomic_write_text, printable
from emu.hw.tlb import IS_DOMAIN_NODE, IS_DOMAIN_NODE_CAVEAT
from emu.jsonfmt import REPORT_VERSION, by_node, by_node_total
from emu.jsonfmt import dumps as report_text
from emu.kernel.layout import format_layout_report
from emu.verdict import describe_check


def make_report(runs: Sequence[dict], timings: Sequence[dict], complete: bool = True,
                host: dict | None = None) -> dict:
    """The document; ``host`` (kept apart from ``runs``, like the timings) says
    how this host ran them, e.g. whether the compiled extension was in use."""
    document = {
        "ktext_emu_report": REPORT_VERSION,
        "complete": complete,
        "runs": list(runs),
        "timings": list(timings),
    }
    if host is not None:
        document["host"] = dict(host)
    return document


def write_json(path: str | Path, report: dict) -> None:
    """Every report's writer (run, replay, storm, verify, scenarios): the
    compact text of emu/jsonfmt.py, written atomically."""
    atomic_write_text(path, report_text(report))


def measured_counts(cpu: dict) -> dict:
    """The part of a CPU's counts the comparison charges: its measurement
    window (a report from before windows: all of them)."""
    return cpu.get("window") or cpu


def local_kernel_share(run: dict, node: int) -> float | None:
    """Share of kernel-text fetches of ``node``'s CPUs served by ``node`` itself,
    inside the measurement window."""
    local = total = 0
    for cpu in run["cpus"]:
        if cpu["node"] == node:
            fetches = measured_counts(cpu)["kernel_fetches_by_node"]
            local += by_node(fetches, node)
            total += by_node_total(fetches)
    return None if total == 0 else local / total


def local_kernel_shares(run: dict) -> dict[int, float | None]:
    """local_kernel_share of every node that has CPUs in the report, in one
    pass over the CPUs (not one per node: 1024 nodes x 4096 CPUs)."""
    local: dict[int, int] = {}
    total: dict[int, int] = {}
    for cpu in run["cpus"]:
        node = cpu["node"]
        fetches = measured_counts(cpu)["kernel_fetches_by_node"]
        local[node] = local.get(node, 0) + by_node(fetches, node)
        total[node] = total.get(node, 0) + by_node_total(fetches)
    return {node: None if total[node] == 0 else local[node] / total[node]
            for node in sorted(total)}  # fmt: skip


def plural(noun: str) -> str:
    """English plural of a workload's iteration noun (query -> queries)."""
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u"):
        return noun[:-1] + "ies"
    return noun + "s"


def iteration_noun(run: dict) -> str:
    """What one workload iteration is ("query", "syscall", ...)."""
    return (run.get("window") or {}).get("noun", "query")


def run_label(run: dict) -> str:
    """'ktext off', 'ktext on' or 'ktext on, refused'."""
    if run["ktext"]:
        return "ktext on"
    return "ktext on, refused" if run.get("ktext_requested") else "ktext off"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:6.1f}%"


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def _node_cycles(run: dict, node: int) -> float:
    return sum(cpu["cycles"] for cpu in run["cost"]["cpus"] if cpu["node"] == node)


def _per_iteration(run: dict, node: int) -> str:
    """Window cycles per window iteration of ``node``'s CPUs ("-" when unknown)."""
    cpus = [cpu for cpu in run["cpus"] if cpu["node"] == node]
    if cpus and all("window" in cpu for cpu in cpus):
        counts = [cpu["window"]["iterations"] for cpu in cpus]
        iterations = sum(counts) if None not in counts else 0
    else:  # a report from before windows: every task ran run["iterations"]
        iterations = (run.get("iterations") or 0) * len(cpus)
    if not iterations:
        return "-"
    return f"{_node_cycles(run, node) / iterations:,.0f}"


def format_window(run: dict, label: str) -> list[str]:
    """Boot and set-up apart from the measured window, for one run."""
    window = run.get("window")
    if not window:
        return []
    if not window["cpus_opened"]:
        return [f"  {label}: no task opened a measurement window: the whole run is charged"]
    noun = window["noun"]
    iterations = window["iterations"]
    counted = f"{iterations:,} {noun if iterations == 1 else plural(noun)}" if iterations else (
        f"{plural(noun)} not known (a task did not finish)")
    warmup = f", after {window['warmup']:,} warm-up per task" if window["warmup"] else ""
    opened = len(run["cpus"])
    missing = "" if window["cpus_opened"] == opened else (
        f"; {opened - window['cpus_opened']} CPU(s) never opened theirs, charged whole")
    return [f"  {label}: boot and set-up {window['setup_instructions']:,} instructions "
            f"(not charged); window {window['instructions']:,} instructions, "
            f"{counted}{warmup}{missing}"]


def _mib(value: float) -> str:
    return f"{value / 2**20:.2f}"


def format_cost(runs: Sequence[dict], labels: Sequence[str]) -> list[str]:
    """Modelled cycles per workload iteration, speed-up, and per-node DRAM
    traffic with balance, all of the measurement windows."""
    model = runs[0]["cost"]["model"]
    nodes = len(runs[0]["cost"]["node_traffic_bytes"])
    per = "cycles/" + iteration_noun(runs[0])
    head = f"{'node':>4}  " + "".join(f"{per + ' ' + lab:>26}" for lab in labels)
    head += "".join(f"{'DRAM MiB ' + lab:>22}" for lab in labels)
    lines = [f"cost model: {model}", head]
    for node in range(nodes):
        row = f"{node:>4}  " + "".join(f"{_per_iteration(run, node):>26}" for run in runs)
        row += "".join(f"{_mib(run['cost']['node_traffic_bytes'][node]):>22}" for run in runs)
        lines.append(row)
    if all("balance_max_mean" in run["cost"] for run in runs):
        balances = ", ".join(f"{lab} {run['cost']['balance_max_mean']:.2f}"
                             for run, lab in zip(runs, labels, strict=True))
        lines.append(f"memory traffic balance (busiest node / mean over nodes; 1.00 even, "
                     f"{nodes}.00 all on one node): {balances}")
    else:  # a report from before max/mean
        balances = ", ".join(
            f"{lab} {run['cost']['balance']:.2f}" if run["cost"]["balance"] is not None
            else f"{lab} inf" for run, lab in zip(runs, labels, strict=True)
        )  # fmt: skip
        lines.append(f"memory traffic balance (max/min across nodes): {balances}")
    on = [run for run in runs if run["ktext"] and "speedup" in run["cost"]]
    if on and len(runs) > 1:
        speed = on[0]["cost"]["speedup"]
        lines.append(f"modelled speed-up from replication: {speed:.4f}x "
                     f"({100 * (speed - 1):+.2f}% total cycles)")
    lines += format_band(runs, labels)
    return lines


def format_band(runs: Sequence[dict], labels: Sequence[str]) -> list[str]:
    """The speed-up band, the fast/detailed agreement and the sanity figures."""
    lines = []
    for run in runs:
        band = run["cost"].get("speedup_band")
        if band:
            over = run["cost"].get("band_over", {})
            ranges = ", ".join(over.get("ranges", ())) or "none"
            lines.append(
                f"speed-up band: low {band['low']:.4f}x, mid {band['mid']:.4f}x, "
                f"high {band['high']:.4f}x"
            )
            lines.append(f"  over the ranges of {ranges}; simulated: "
                         f"{'; '.join(over.get('variants', ()))}")
        agree = run["cost"].get("fast_agreement")
        if agree:
            verdict = "agree" if agree["agree"] else "DISAGREE"
            lines.append(f"fast vs cache gain: {100 * agree['fast_gain']:+.2f}% vs "
                         f"{100 * agree['cache_gain']:+.2f}% ({verdict}, tolerance "
                         f"{100 * agree['tolerance']:.2f} points)")
            if agree["why"]:
                lines.append(f"  ({agree['why']})")
    for run, label in zip(runs, labels, strict=True):
        sanity = run["cost"].get("sanity")
        if sanity and sanity["cpi"] is not None:
            lines.append(
                f"sanity ({label}): kernel share {100 * sanity['kernel_share']:.1f}%, "
                f"front-end stall share {100 * sanity['frontend_stall_share']:.1f}%, "
                f"CPI {sanity['cpi']:.2f}, MPKI L1I {sanity['l1i_mpki']:.2f} "
                f"L2I {sanity['l2i_mpki']:.2f} LLC {sanity['llc_mpki']:.2f}"
            )
    return lines


def cpu_ranges(cpus: Sequence[int], separator: str = ", ") -> str:
    """[0, 1, 2, 5] as '0-2, 5'."""
    ranges: list[list[int]] = []
    for cpu in cpus:
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return separator.join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def format_cnp(runs: Sequence[dict], labels: Sequence[str]) -> list[str]:
    """Per run with CnP set on some CPU: where, and what the shared TLB
    entries did across nodes; the caveat of per-node Inner Shareable domains."""
    lines = []
    if any(run.get("is_domain") == IS_DOMAIN_NODE for run in runs):
        lines.append(f"--is-domain node: {IS_DOMAIN_NODE_CAVEAT}")
    for run, label in zip(runs, labels, strict=True):
        cnp = run.get("cnp")
        if not cnp or not cnp["cpus"]:
            continue
        domains = ("one Inner Shareable domain per node" if cnp["is_domain"] == IS_DOMAIN_NODE
                   else "one Inner Shareable domain for the machine")
        source = "copy of the text" if run["ktext"] else "memory"
        lines.append(
            f"CnP ({label}): TTBR1_EL1.CnP set on CPUs {cpu_ranges(cnp['cpus'])} of "
            f"{len(run['cpus'])}, {domains}; {cnp['remote_filled_translations']:,} shared TLB "
            f"entries filled on one node used on another, by {cnp['cpus_using_remote_fills']} "
            f"CPUs; {cnp['remote_kernel_fetches_through_remote_fills']:,} kernel-text fetches "
            f"from another node's {source} through them"
        )
    return lines


def format_verdict(runs: Sequence[dict]) -> list[str]:
    """The verdict line (emu/verdict.py), from whichever run carries one."""
    for run in runs:
        verdict = run.get("cost", {}).get("verdict")
        if verdict:
            return [f"verdict: {verdict['line']}",
                    f"  sanity of {verdict['sanity_scope']}: {describe_check(verdict)}",
                    f"  published ranges and their sources: {verdict['ranges']}"]
    return []


def format_report(report: dict) -> str:
    """The comparison table for people: per node, for each run side by side."""
    runs = report["runs"]
    if not runs:
        return "no runs"
    first = runs[0]
    machine = first["machine"]
    lines = [
        f"machine {machine['name']}: {machine['nodes']} nodes x {machine['cpus_per_node']} CPUs, "
        f"{machine['granule'] // 1024}K pages, {machine['va_bits']}-bit VA "
        f"({machine['levels']} levels); workload {first['workload']}"
    ]
    if "layout" in first:
        lines += format_layout_report(first["layout"])
    if "user_memory" in first:
        where = ("each node's own RAM" if first["user_memory"] == "local"
                 else "node 0's RAM")
        lines.append(f"  user text and rodata in {where} (--user-memory {first['user_memory']})")
    if first.get("syscalls"):
        lines.append("  syscalls added: " + ", ".join(
            f"{nr} {name}" for nr, name in first["syscalls"].items()))
    labels = [run_label(run) for run in runs]
    for run, label in zip(runs, labels, strict=True):
        note = f" ({run['ktext_message']})" if run.get("ktext_message") else ""
        lines.append(
            f"  {label}: {run['instructions']:,} instructions, {run['stop_reason']}{note}"
        )
        lines += [f"    kernel warning: {text}" for text in run.get("kernel_warnings", ())]
        if run.get("console_dropped_bytes"):
            limit = run.get("limits", {}).get("max_console_bytes", 0)
            lines.append(f"  {label}: console output capped at {limit:,} bytes: "
                         f"{run['console_dropped_bytes']:,} more bytes dropped")
    lines += format_cnp(runs, labels)
    for run, label in zip(runs, labels, strict=True):
        lines += format_window(run, label)
    lines += ["", *format_local_shares(runs, labels, machine["nodes"])]
    if all("cost" in run for run in runs):
        lines += ["", *format_cost(runs, labels)]
    lines.append("")
    for run, label in zip(runs, labels, strict=True):
        checks = run["checks"]
        lines.append(
            f"checks ({label}): copies identical {_yes(checks['copies_identical'])}, "
            f"roots differ only in kernel slots {_yes(checks['roots_differ_only_in_kernel_slots'])}, "
            f"TTBR1 matches node {_yes(checks['ttbr1_matches_node'])}"
        )
    verdict = format_verdict(runs)
    if verdict:
        lines += ["", *verdict]
    # Names come from files and the command line: a control character is shown, not sent.
    return "\n".join(printable(line) for line in lines)


def format_local_shares(runs: Sequence[dict], labels: Sequence[str], nodes: int) -> list[str]:
    """The per-node table of local kernel-fetch shares, one column per run."""
    header = f"{'node':>4}  {'CPUs':>4}  " + "  ".join(
        f"{'local kernel fetches (' + label + ')':>32}" for label in labels
    )
    per_node: dict[int, int] = {}
    for cpu in runs[0]["cpus"]:
        per_node[cpu["node"]] = per_node.get(cpu["node"], 0) + 1
    shares = [local_kernel_shares(run) for run in runs]
    lines = [header]
    for node in range(nodes):
        cells = "  ".join(f"{_pct(share.get(node)):>32}" for share in shares)
        lines.append(f"{node:>4}  {per_node.get(node, 0):>4}  {cells}")
    return lines


def format_console(run: dict, label: str) -> list[str]:
    """The run's console output (the ``puts`` syscall), each line prefixed
    with the CPU that wrote it; nothing when the guest wrote nothing."""
    texts = run.get("console") or []
    if not texts:
        return []
    cpus = run.get("console_cpus") or [None] * len(texts)
    lines = [f"console ({label}):"]
    for cpu, text in zip(cpus, texts, strict=False):
        prefix = f"[cpu {cpu}] " if cpu is not None and cpu >= 0 else "[cpu ?] "
        for line in text.rstrip("\n").split("\n"):
            lines.append(prefix + printable(line))  # the guest's bytes, shown not sent
    return lines


def format_fault_blocks(fault: dict) -> list[str]:
    """The last blocks the faulting CPU entered, oldest first, each with its
    symbol and its instructions as the image has them."""
    blocks = fault.get("recent_blocks") or []
    if not blocks:
        return []
    lines = [f"last {len(blocks)} blocks run on CPU {fault.get('cpu')} (oldest first):"]
    index = 0
    while index < len(blocks):
        block = blocks[index]
        repeats = 1
        while index + repeats < len(blocks) and blocks[index + repeats]["va"] == block["va"]:
            repeats += 1
        index += repeats
        times = f" ({repeats} times in a row)" if repeats > 1 else ""
        lines.append(f"  {block['va']} <{block['symbol']}>:{times}")
        insns = block.get("insns") or []
        if not insns:
            lines.append("      (not in the image)")
        for insn in insns:
            target = f"  <{insn['target']}>" if insn.get("target") else ""
            mark = "    <- fault PC" if insn["va"] == fault.get("pc") else ""
            lines.append(f"      {insn['va']}:  {insn['text']}{target}{mark}")
    return lines
