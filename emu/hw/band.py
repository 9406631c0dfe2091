"""The gain of replication as a band over the figures nobody published, the
sanity figures of a run, and the fast-versus-detailed agreement.

Owns three functions of two runs' cache-model counts (CostReport.hierarchy):

- speedup_band(off, on): the speed-up (cycles off / cycles on, 1.0 = no
  gain) at every corner of the ranges (each ranged figure at its low or
  high end, emu/hw/cost.py RANGE_NAMES) and for every simulated structural
  variant (next-line prefetch off/on, inclusive L2 or not, where the preset
  lists both); "low"/"high" are the least and greatest of those and of the
  point estimate, "mid" is the point estimate itself: every range at its
  midpoint, structural options at their first listed value.  Latency ranges
  are re-costed from the miss counts; structural ones were simulated.
- sanity(report, nodes): at the point estimate, over every CPU or the CPUs
  of ``nodes``: kernel_share = instructions fetched from kernel text /
  instructions;
  frontend_stall_share = cycles charged to instruction fetches that miss
  the L1I (L2 hits, LLC hits, DRAM fills) / all cycles, the definition of
  "instruction-related stall time" (STEPS, VLDB 2004), not Top-Down's
  Frontend Bound, which is a share of issue slots and also counts fetch
  bandwidth and branch resteers (only loosely comparable); cpi = cycles /
  instructions; l1i_mpki = demand L1I misses (prefetches not counted),
  l2i_mpki = instruction-fetch misses of the L2, llc_mpki = LLC misses
  (fetch and data fills from DRAM), each per thousand instructions.
  Published ranges and sources: emu/data/sanity/server-workloads.toml.
- agreement(off, on): the fast model's gain against the detailed one's.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection
from typing import Any

from emu.hw.cachemodel import HierarchyResult, Variant, frontend_stall_cycles, hierarchy_cycles
from emu.hw.cost import CostReport

# Agreement: within 10% of the detailed gain, or 0.1 percentage point when
# the gain itself is near zero (10% of nothing is no tolerance at all).
AGREEMENT_RELATIVE = 0.10
AGREEMENT_ABSOLUTE = 0.001


def _hierarchy(report: CostReport) -> HierarchyResult:
    if report.hierarchy is None:
        raise ValueError("band: the report has no cache-model counts")
    return report.hierarchy


def speedup_band(off: CostReport, on: CostReport) -> dict[str, float]:
    """{"low", "mid", "high"} speed-ups of ``on`` over ``off`` (module docstring)."""
    h_off, h_on = _hierarchy(off), _hierarchy(on)
    params = on.parameters
    ranged = params.ranged()
    mid = float(off.total_cycles / on.total_cycles)
    speedups = [mid]
    variants = [v for v in h_on.variants if v.sampled == h_on.primary.sampled]
    for picks in itertools.product(("low", "high"), repeat=len(ranged)):
        point = params.point(dict(zip(ranged, picks, strict=True)))
        for variant in variants:
            cycles_on = h_on.total_cycles(variant, point)
            if cycles_on > 0:
                speedups.append(h_off.total_cycles(variant, point) / cycles_on)
    return {"low": min(speedups), "mid": mid, "high": max(speedups)}


SANITY_FIGURES = ("kernel_share", "frontend_stall_share", "cpi", "l1i_mpki", "l2i_mpki",
                  "llc_mpki")  # fmt: skip


def sanity(report: CostReport, nodes: Collection[int] | None = None) -> dict[str, float | None]:
    """The run's sanity figures at the point estimate (module docstring),
    over every CPU or only the CPUs of ``nodes``."""
    h = _hierarchy(report)
    point = report.parameters.mid_point()
    cpus = [cpu for cpu, node in enumerate(h.cpu_nodes) if nodes is None or node in nodes]
    stats = [h.stats[h.variants.index(h.primary)][cpu] for cpu in cpus]
    instructions = sum(h.instructions[cpu] for cpu in cpus)
    if instructions == 0:
        return dict.fromkeys(SANITY_FIGURES)
    cycles = sum(
        hierarchy_cycles(s, h.instructions[cpu], h.cpu_nodes[cpu], point, h.llc_at_home)
        for cpu, s in zip(cpus, stats, strict=True)
    )  # fmt: skip
    stalls = sum(frontend_stall_cycles(s, h.cpu_nodes[cpu], point, h.llc_at_home)
                 for cpu, s in zip(cpus, stats, strict=True))  # fmt: skip
    per_k = 1000 / instructions
    return {
        "kernel_share": sum(h.kernel_instructions[cpu] for cpu in cpus) / instructions,
        "frontend_stall_share": stalls / cycles if cycles else 0.0,
        "cpi": cycles / instructions,
        "l1i_mpki": sum(s.l1i_misses for s in stats) * per_k,
        "l2i_mpki": sum(s.l2_fetch_misses for s in stats) * per_k,
        "llc_mpki": sum(s.llc_fetch_misses + s.llc_data_misses for s in stats) * per_k,
    }


def _gain(off: HierarchyResult, on: HierarchyResult, variant: Variant, params: Any) -> float:
    point = params.mid_point()
    return off.total_cycles(variant, point) / on.total_cycles(variant, point) - 1


def agreement(off: CostReport, on: CostReport) -> dict[str, Any] | None:
    """The fast model's gain against the detailed one's, or None when the
    run simulated only one variant.  The fast model is the first-listed
    structural variant at full size, so its gain is the detailed point's;
    with set-sampled copies (CacheModel sampled=True) the sampled estimate
    is compared instead.  ``agree``: within 10% of the detailed gain (or 0.1
    point); ``why`` says what the comparison means or why it fails."""
    h_off, h_on = _hierarchy(off), _hierarchy(on)
    full = [v for v in h_on.variants if not v.sampled]
    sampled = [v for v in h_on.variants if v.sampled]
    if len(h_on.variants) < 2:
        return None
    params = on.parameters
    detailed = _gain(h_off, h_on, full[0], params)
    fast_variant = sampled[0] if sampled else full[0]
    fast = _gain(h_off, h_on, fast_variant, params)
    tolerance = max(AGREEMENT_RELATIVE * abs(detailed), AGREEMENT_ABSOLUTE)
    agree = abs(fast - detailed) <= tolerance
    if not sampled:
        why = ("fast simulates the same full-size hierarchy (its first-listed structural "
               "variant), so the point gains are equal; the band of cache also spans the "
               "structural variants")  # fmt: skip
    elif agree:
        why = None
    else:
        index = h_on.variants.index(fast_variant)
        seen = sum(s.l1i_misses for s in h_on.stats[index]) // fast_variant.scale
        why = (f"set sampling simulates 1 line group in {fast_variant.scale} and scales by "
               f"{fast_variant.scale}; its sampled sets saw {seen:,} instruction misses, so "
               "whether this run's few hot lines fall in a sampled group decides its gain")  # fmt: skip
    return {"fast_gain": fast, "cache_gain": detailed, "agree": agree,
            "tolerance": tolerance, "why": why}  # fmt: skip


def band_and_sanity(off: CostReport | None, on: CostReport) -> dict[str, Any]:
    """What a run's ``cost`` JSON gains: sanity always; with an ``off`` run,
    the speed-up band and the fast/detailed agreement."""
    doc: dict[str, Any] = {"sanity": sanity(on)}
    if off is not None:
        doc["speedup_band"] = speedup_band(off, on)
        h = _hierarchy(on)
        doc["band_over"] = {
            "ranges": list(on.parameters.ranged()),
            "variants": [v.label() for v in h.variants if v.sampled == h.primary.sampled],
        }
        agree = agreement(off, on)
        if agree is not None:
            doc["fast_agreement"] = agree
    return doc


__all__ = ["SANITY_FIGURES", "agreement", "band_and_sanity", "sanity", "speedup_band"]
