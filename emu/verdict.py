"""Whether a comparison may claim its modelled gain: the published sanity
ranges, the check of a run's sanity figures against them, and the verdict.

Owns the ranges file (emu/data/sanity/server-workloads.toml: each figure's
[low, high] and the passage it comes from), ``check_sanity`` (each figure in
or out of its range), ``verdict`` (sanity first: if every checked figure is
in range, "replication gains X% (band L%..H%) on MACHINE, WORKLOAD", else
"no gain claimed: FIGURE VALUE outside RANGE (SOURCE)"), ``against_series``
(the band against the series' 6-17%, the validation's pass rule) and
``add_verdict`` (what ``run`` puts into the ktext-on run's ``cost``).

Issue 12 item 7 asks for the sanity figures of a single-node, ktext-off run.
``add_verdict`` takes them from node 0's CPUs of the ktext-off run: with
replication off every kernel line is homed on node 0, and the shipped
workloads' user code and data are in node 0's memory, so those CPUs see
only local latencies, which is what a single-node machine sees; it costs no
extra run.  What differs from a real one-node machine is that node 0's LLC
slice also serves node 1's CPUs (the LLC at the home node); the validation
protocol (notes/validation-protocol.md) runs ``--nodes 1 --ktext off`` as
well and compares the two.

For callers other than ``run`` (``replay``): ``verdict(band, sanity,
machine=..., workload=..., sanity_scope=..., not_applicable={...})``; a
figure in ``not_applicable`` (for example the kernel share of a kernel-only
trace) is reported as not checked, with the reason, and the line says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from emu.errors import ConfigError
from emu.hw.band import SANITY_FIGURES, sanity
from emu.hw.cost import CostReport
from emu.tomlfile import located, toml_error

RANGES_FILE = "data/sanity/server-workloads.toml"
SHARE_UNIT = "share"
LABELS = {
    "kernel_share": "kernel share",
    "frontend_stall_share": "front-end stall share",
    "cpi": "CPI",
    "l1i_mpki": "L1I MPKI",
    "l2i_mpki": "L2I MPKI",
    "llc_mpki": "LLC MPKI",
}


@dataclass(frozen=True)
class FigureRange:
    """One sanity figure's published range (None: no published value read)."""

    name: str
    low: float | None
    high: float | None
    checked: bool
    unit: str
    cite: str
    source: str
    definition: str
    comparable: str

    def contains(self, value: float) -> bool:
        return self.low is not None and self.high is not None and self.low <= value <= self.high

    def show(self, value: float | None) -> str:
        if value is None:
            return "-"
        return f"{100 * value:.1f}%" if self.unit == SHARE_UNIT else f"{value:.2f}"

    def show_range(self) -> str:
        if self.low is None or self.high is None:
            return "none"
        if self.unit == SHARE_UNIT:
            return f"{100 * self.low:g}%..{100 * self.high:g}%"
        return f"{self.low:g}..{self.high:g}"


@dataclass(frozen=True)
class SanityRanges:
    """The ranges file: the figures, and the series' reported gain."""

    origin: str
    figures: tuple[FigureRange, ...]
    series_gain: tuple[float, float]
    series_midpoint_within: tuple[float, float]
    series_cite: str

    def figure(self, name: str) -> FigureRange:
        for fig in self.figures:
            if fig.name == name:
                return fig
        raise KeyError(name)


def _pair(origin: str, text: str, table: str, key: str, value: Any) -> tuple[float, float]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int | float) for v in value) or value[0] > value[1]):  # fmt: skip
        raise ConfigError(located(origin, text, table, key, f"{key} must be [low, high] with low <= high"))
    return float(value[0]), float(value[1])


def parse_ranges(text: str, origin: str) -> SanityRanges:
    """The ranges of ``text`` (a ranges file read from ``origin``)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(toml_error(origin, err)) from None
    tables = doc.get("figures", {})
    missing = [name for name in SANITY_FIGURES if name not in tables]
    if missing:
        raise ConfigError(f"{origin}: no [figures.{missing[0]}] table")
    figures = []
    for name in SANITY_FIGURES:
        table = tables[name]
        where = f"figures.{name}"
        for key in ("checked", "unit", "cite", "source", "definition", "comparable"):
            if key not in table:
                raise ConfigError(located(origin, text, where, None, f"[{where}] has no {key}"))
        low = high = None
        if "range" in table:
            low, high = _pair(origin, text, where, "range", table["range"])
        elif table["checked"]:
            raise ConfigError(located(origin, text, where, "checked",
                                      f"[{where}] is checked but has no range"))  # fmt: skip
        figures.append(FigureRange(name, low, high, bool(table["checked"]), table["unit"],
                                   table["cite"], table["source"], table["definition"],
                                   table["comparable"]))  # fmt: skip
    series = doc.get("series")
    if series is None:
        raise ConfigError(f"{origin}: no [series] table")
    return SanityRanges(
        origin=origin,
        figures=tuple(figures),
        series_gain=_pair(origin, text, "series", "gain", series.get("gain")),
        series_midpoint_within=_pair(
            origin, text, "series", "midpoint_within", series.get("midpoint_within")
        ),
        series_cite=str(series.get("cite", "")),
    )


def load_ranges(path: str | Path | None = None) -> SanityRanges:
    """The shipped ranges file, or the one at ``path``."""
    if path is None:
        text = resources.files("emu").joinpath(RANGES_FILE).read_text()
        return parse_ranges(text, f"emu/{RANGES_FILE}")
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the sanity ranges: {err.strerror}") from None
    return parse_ranges(text, str(path))


def check_sanity(figures: Mapping[str, float | None], ranges: SanityRanges,
                 not_applicable: Mapping[str, str] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Each figure with its range: ``in_range`` True/False, or None where it
    is not checked (no published range, or not applicable: ``why``)."""
    not_applicable = not_applicable or {}
    rows = []
    for fig in ranges.figures:
        value = figures.get(fig.name)
        why = not_applicable.get(fig.name)
        if why is None and value is None:
            why = "no value (nothing ran in the measured window)"
        if why is None and not fig.checked:
            why = "no published range read"
        in_range = None if why is not None else fig.contains(value)
        rows.append({
            "figure": fig.name,
            "value": value,
            "range": None if fig.low is None else [fig.low, fig.high],
            "checked": fig.checked and fig.name not in not_applicable,
            "in_range": in_range,
            "why_not_checked": why,
            "cite": fig.cite,
        })  # fmt: skip
    return rows


def describe_check(doc: Mapping[str, Any], ranges: SanityRanges | None = None) -> str:
    """The verdict's sanity figures for people: each checked figure with its
    range and in/OUT, then the unchecked ones with why."""
    ranges = ranges or load_ranges()
    checked, other = [], []
    for row in doc["sanity_check"]:
        fig = ranges.figure(row["figure"])
        shown = f"{LABELS[fig.name]} {fig.show(row['value'])}"
        if row["in_range"] is None:
            other.append(f"{shown} ({row['why_not_checked']})")
        else:
            checked.append(f"{shown} (range {fig.show_range()}): {'yes' if row['in_range'] else 'NO'}")
    return "; ".join(checked + other)


def _pct(gain: float) -> str:
    return f"{100 * gain:+.2f}%"


def verdict(band: Mapping[str, float] | None, figures: Mapping[str, float | None], *,
            machine: str, workload: str, sanity_scope: str,
            ranges: SanityRanges | None = None,
            not_applicable: Mapping[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """The verdict of a comparison (module docstring).  ``band``: the
    speed-up band {"low", "mid", "high"} (ratios), None when nothing was
    compared; ``figures``: the sanity figures the check uses."""
    ranges = ranges or load_ranges()
    rows = check_sanity(figures, ranges, not_applicable)
    failed = [row for row in rows if row["in_range"] is False]
    unchecked = [row["figure"] for row in rows
                 if row["figure"] in (not_applicable or {})]  # fmt: skip
    gains = None if band is None else {k: band[k] - 1 for k in ("low", "mid", "high")}
    if failed:
        reasons = []
        for row in failed:
            fig = ranges.figure(row["figure"])
            reasons.append(f"{LABELS[fig.name]} {fig.show(row['value'])} outside "
                           f"{fig.show_range()} ({fig.cite})")  # fmt: skip
        line = "no gain claimed: " + "; ".join(reasons)
    elif gains is None:
        line = "no gain claimed: no ktext-on run to compare (sanity: every checked figure in range)"
    else:
        line = (f"replication gains {_pct(gains['mid'])} (band {_pct(gains['low'])}.."
                f"{_pct(gains['high'])}) on {machine}, {workload}")  # fmt: skip
        if unchecked:
            line += f" (sanity not checked for {', '.join(LABELS[n] for n in unchecked)})"
    return {
        "claimed": not failed and gains is not None,
        "line": line,
        "gain": gains,
        "machine": machine,
        "workload": workload,
        "sanity_scope": sanity_scope,
        "sanity_check": rows,
        "failed": [row["figure"] for row in failed],
        "ranges": ranges.origin,
        "series": None if band is None else against_series(band, ranges),
    }


def against_series(band: Mapping[str, float], ranges: SanityRanges | None = None) -> dict[str, Any]:
    """The band against the series' reported gain: the validation's pass
    rule (issue 12 item 7) is ``overlaps`` and ``midpoint_within``."""
    ranges = ranges or load_ranges()
    low, high = ranges.series_gain
    mid_low, mid_high = ranges.series_midpoint_within
    gain_low, gain_mid, gain_high = band["low"] - 1, band["mid"] - 1, band["high"] - 1
    overlaps = gain_low <= high and gain_high >= low
    within = mid_low <= gain_mid <= mid_high
    return {"gain": [low, high], "midpoint_within": [mid_low, mid_high], "cite": ranges.series_cite,
            "overlaps": overlaps, "midpoint_in": within, "pass": overlaps and within}  # fmt: skip


SANITY_SCOPE_OFF = "node 0 of the ktext-off run (every access local, as on a single-node machine)"
SANITY_SCOPE_ON = "node 0 of the ktext-on run (no ktext-off run; node 0's copy is the original)"


def add_verdict(runs: Sequence[dict], costs: Sequence[CostReport],
                ranges: SanityRanges | None = None,
                not_applicable: Mapping[str, str] | None = None) -> None:  # fmt: skip
    """Put the verdict into the ``cost`` of the ktext-on run (or, with no
    such run, of the last run), from node 0's sanity figures of the
    ktext-off run (module docstring); figures in ``not_applicable`` are not
    checked, with the reason given."""
    modelled = [(run, cost) for run, cost in zip(runs, costs, strict=True)
                if cost.hierarchy is not None]  # fmt: skip
    if not modelled:
        return
    off = [pair for pair in modelled if not pair[0]["ktext"]]
    on = [pair for pair in modelled if pair[0]["ktext"]]
    source, scope = (off[0], SANITY_SCOPE_OFF) if off else (on[0], SANITY_SCOPE_ON)
    figures = sanity(source[1], nodes=(0,))
    target = on[0][0] if on else modelled[-1][0]
    band = target["cost"].get("speedup_band") if on and off else None
    target["cost"]["verdict"] = verdict(
        band, figures, machine=target["machine"]["name"], workload=target["workload"],
        sanity_scope=scope, ranges=ranges, not_applicable=not_applicable,
    )  # fmt: skip


__all__ = ["FigureRange", "SanityRanges", "add_verdict", "against_series", "check_sanity",
           "describe_check", "load_ranges", "parse_ranges", "verdict"]  # fmt: skip
