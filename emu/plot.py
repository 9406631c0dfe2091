"""``--plot PATH.png``: where kernel traffic goes, replication off vs on.

One node x node heat map per run (rows: the node of the CPUs, columns: the
node whose DRAM served them; the cost model's cache-line traffic of I- and
D-cache misses, in bytes) and modelled cycles per CPU, one bar per run: below
the maps for two runs, beside the map for one.  The title names the machine,
the workload and the cost model.
"""

from __future__ import annotations

import io
from pathlib import Path

from emu.errors import UsageError
from emu.fileio import atomic_write_bytes
from emu.jsonfmt import matrix_items


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib: python3 -m pip install matplotlib (or '.[plot]')"
        ) from None


def _label(run: dict) -> str:
    return "ktext on" if run["ktext"] else "ktext off"


# What the cost model's memory lines are (emu/hw/cost.py): cache lines moved
# to or from DRAM by instruction-fetch and data-access misses, both models.
TRAFFIC_WHAT = "modelled DRAM traffic (fetch and data lines missing the caches), bytes"


def figure_title(report: dict) -> str:
    """Machine, workload and cost model of the report's runs."""
    run = report["runs"][0]
    machine = run["machine"]
    return (f"machine {machine['name']} ({machine['nodes']} nodes x {machine['cpus_per_node']} "
            f"CPUs, {machine['granule'] // 1024}K pages, {machine['va_bits']}-bit VA), "
            f"workload {run['workload']}, cost model {run['cost']['model']}")


def make_figure(report: dict):  # -> matplotlib.figure.Figure
    """The figure ``--plot`` writes.  Each run gets a node x node heat map;
    the per-CPU cycle bars go beside a single run's map, below several."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [run for run in report["runs"] if "cost" in run]
    if not runs:
        raise UsageError("--plot: the report has no cost model results to plot")
    if len(runs) == 1:
        fig = plt.figure(figsize=(13, 5), dpi=100)
        grid = fig.add_gridspec(1, 2, width_ratios=[1, 1.5])
        maps = [grid[0, 0]]
        bar_cell = grid[0, 1]
    else:
        fig = plt.figure(figsize=(5.5 * len(runs), 9), dpi=100)
        grid = fig.add_gridspec(2, len(runs), height_ratios=[1.1, 1])
        maps = [grid[0, column] for column in range(len(runs))]
        bar_cell = grid[1, :]
    fig.suptitle(figure_title({"runs": runs}), fontsize=11)
    matrices = [traffic_matrix(run) for run in runs]
    vmax = max(max(max(row) for row in matrix) for matrix in matrices) or 1
    for cell, run, matrix in zip(maps, runs, matrices, strict=True):
        axes = fig.add_subplot(cell)
        image = axes.imshow(matrix, cmap="viridis", vmin=0, vmax=vmax)
        nodes = len(matrix)
        axes.set_xticks(range(nodes))
        axes.set_yticks(range(nodes))
        axes.set_xlabel("memory node (DRAM)")
        axes.set_ylabel("node of the CPUs")
        axes.set_title(f"{_label(run)}: {TRAFFIC_WHAT}", fontsize=9)
        fig.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    bars = fig.add_subplot(bar_cell)
    width = 0.8 / len(runs)
    for index, run in enumerate(runs):
        cycles = run["cost"]["cpu_cycles"]
        positions = [cpu + index * width for cpu in range(len(cycles))]
        bars.bar(positions, cycles, width=width, label=_label(run))
    n_cpus = len(runs[0]["cost"]["cpu_cycles"])
    bars.set_xticks([cpu + 0.4 - width / 2 for cpu in range(n_cpus)])
    bars.set_xticklabels([f"{cpu['cpu']}\nn{cpu['node']}" for cpu in runs[0]["cpus"]])
    bars.set_xlabel("CPU (node)")
    bars.set_ylabel("modelled cycles")
    speed = runs[-1]["cost"].get("speedup")
    title = f"modelled cycles per CPU ({runs[0]['cost']['model']} cost model)"
    if speed is not None and len(runs) > 1:
        title += f"; speed-up from replication {speed:.3f}x"
    bars.set_title(title, fontsize=9)
    bars.legend()
    fig.tight_layout()
    return fig


def traffic_matrix(run: dict) -> list[list[float]]:
    """The run's node x node traffic as the dense matrix imshow draws (a
    report of either version: list of lists, or v2's sparse object)."""
    nodes = run["machine"]["nodes"]
    matrix = [[0.0] * nodes for _ in range(nodes)]
    for row, column, value in matrix_items(run["cost"]["traffic_matrix_bytes"]):
        matrix[row][column] = value
    return matrix


def write_plot(path: str | Path, report: dict) -> None:
    import matplotlib.pyplot as plt

    fig = make_figure(report)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
