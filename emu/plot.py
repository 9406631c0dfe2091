"""``--plot PATH.png``: where kernel traffic goes, replication off vs on.

Top row: one node x node heat map per run (rows: the node of the CPUs,
columns: the node whose memory served them; cache-line traffic in bytes from
the cost model).  Bottom: modelled cycles per CPU, one bar per run.
"""

from __future__ import annotations

import io
from pathlib import Path

from emu.errors import UsageError
from emu.fileio import atomic_write_bytes


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib: python3 -m pip install matplotlib (or '.[plot]')"
        ) from None


def _label(run: dict) -> str:
    return "ktext on" if run["ktext"] else "ktext off"


def write_plot(path: str | Path, report: dict) -> None:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [run for run in report["runs"] if "cost" in run]
    if not runs:
        raise UsageError("--plot: the report has no cost model results to plot")
    fig = plt.figure(figsize=(4.5 * max(2, len(runs)), 8), dpi=100)
    grid = fig.add_gridspec(2, len(runs), height_ratios=[1.1, 1])
    vmax = max(max(max(row) for row in run["cost"]["traffic_matrix_bytes"]) for run in runs) or 1
    for column, run in enumerate(runs):
        axes = fig.add_subplot(grid[0, column])
        matrix = run["cost"]["traffic_matrix_bytes"]
        image = axes.imshow(matrix, cmap="viridis", vmin=0, vmax=vmax)
        nodes = len(matrix)
        axes.set_xticks(range(nodes))
        axes.set_yticks(range(nodes))
        axes.set_xlabel("memory node")
        axes.set_ylabel("CPU node")
        axes.set_title(f"{_label(run)}: DRAM traffic (bytes)")
        fig.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    bars = fig.add_subplot(grid[1, :])
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
    title = f"modelled cycles per CPU ({runs[0]['workload']})"
    if speed is not None and len(runs) > 1:
        title += f"; speed-up from replication {speed:.3f}x"
    bars.set_title(title)
    bars.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
