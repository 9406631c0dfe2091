"""The types the cost model and the cache model share, below both.

Owns CostPoint (every cost figure at one point of its range, in cycles: what
emu/hw/cost.py resolves and emu/hw/cachestats.py prices counts at) and
RunningSystem, what cost_of_run and attach_cache_model read of a system (its
machine and its topology): a Protocol, so that hw names no type of the layers
above it (emu.system's System satisfies it).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from emu.hw.machine import Machine
    from emu.hw.topology import Topology


@dataclass(frozen=True)
class CostPoint:
    """Every cost figure at one point of its range, in core cycles (exact)."""

    base_cpi: Fraction
    l1_hit_cycles: Fraction
    l2_hit_cycles: Fraction
    llc_cycles: tuple[tuple[Fraction, ...], ...]  # [CPU node][LLC slice node]: a hit there
    dram_cycles: tuple[tuple[Fraction, ...], ...]  # [CPU node][memory node]
    data_mlp: Fraction
    picks: tuple[tuple[str, str], ...] = ()  # (figure, "low"/"mid"/"high") for ranges


class HasTopology(Protocol):
    """A run's configuration as far as the cost layer reads it."""

    @property
    def topology(self) -> Topology: ...


class RunningSystem(Protocol):
    """A system whose machine runs (or ran) a workload: emu.system.System."""

    @property
    def machine(self) -> Machine: ...

    @property
    def config(self) -> HasTopology: ...
