"""The machine's NUMA shape: nodes, CPUs per node, RAM per node, the SLIT
distance matrix, optional memory latency, core and cache figures for the
cost model (emu/hw/cost.py, emu/hw/cachemodel.py), and where the numbers
come from.

CPU numbering is node-major, the way firmware usually enumerates a
multi-socket arm64 server: node n owns CPUs n*cpus_per_node ...
(n+1)*cpus_per_node - 1. Every node has CPUs and the same amount of RAM.

Validation follows what Linux itself accepts from firmware:
- drivers/acpi/numa/srat.c slit_valid(): the diagonal must be exactly
  LOCAL_DISTANCE (10) and every other entry strictly greater than 10;
- numa_set_distance() (drivers/base/arch_numa.c, mm/numa_memblks.c):
  a distance must fit in a u8 (``(u8)distance != distance`` is refused),
  so 255 is the largest (ACPI uses 0xFF for "unreachable");
- neither requires the matrix to be symmetric, so this module does not.
Limits are arm64's Kconfig maxima: NODES_SHIFT <= 10 (1024 nodes) and
NR_CPUS <= 4096.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field, replace

from emu.errors import ConfigError

LOCAL_DISTANCE = 10
REMOTE_DISTANCE = 20
MAX_DISTANCE = 255
MAX_NODES = 1024
MAX_CPUS = 4096
MIB = 1 << 20
MIN_NODE_RAM = 16 * MIB
NODE_RAM_ALIGN = 64 * 1024
# A host buffer per node is reserved up front (lazily committed); this cap
# keeps 1024 nodes inside what a 64-bit host can reserve.
MAX_NODE_RAM = 64 * 1024 * MIB

Distances = tuple[tuple[int, ...], ...]


# A figure is a number, or [low, high] where no source publishes it (the cost
# model then reports its result over the range: emu/hw/band.py).
Figure = float | tuple[float, float]
# A structural option: a value, or [first, second] to simulate both.
Choice = bool | tuple[bool, bool]


def figure_points(value: Figure) -> tuple[float, ...]:
    """The values a figure takes in the band: (v,) or (low, high)."""
    return tuple(value) if isinstance(value, tuple) else (value,)


def figure_mid(value: Figure) -> float:
    """A figure's point value: itself, or the midpoint of its range."""
    return (value[0] + value[1]) / 2 if isinstance(value, tuple) else value


def choice_values(value: Choice) -> tuple[bool, ...]:
    """The variants of a structural option: (v,) or (first, second)."""
    return tuple(value) if isinstance(value, tuple) else (value,)


def _figure(what: str, value: object, low: float, high: float, unit: str) -> Figure:
    """A checked figure; a list [low, high] becomes a tuple."""
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise ConfigError(f"{what}: a range must be [low, high], got {len(value)} values")
        for v in value:
            _check_number(what, v, low, high, unit)
        if value[0] > value[1]:
            raise ConfigError(f"{what}: range [{value[0]}, {value[1]}] has low > high")
        return (value[0], value[1])
    _check_number(what, value, low, high, unit)
    return value


def _choice(what: str, value: object) -> Choice:
    if isinstance(value, list | tuple):
        if len(value) != 2 or not all(isinstance(v, bool) for v in value) or value[0] == value[1]:
            raise ConfigError(f"{what}: must be true, false or [false, true]")
        return (value[0], value[1])
    if not isinstance(value, bool):
        raise ConfigError(f"{what}: must be true, false or [false, true], got {value!r}")
    return value


@dataclass(frozen=True)
class MemoryLatency:
    """Published load-to-use DRAM latency of the real machine, for the cost model.

    ``remote_ns`` is the latency measured at SLIT distance ``remote_distance``
    (default: the machine's nearest remote distance).  Without it the cost
    model scales ``local_ns`` by distance / 10, the ACPI SLIT definition.
    Either may be a range [low, high] (a Figure).
    """

    local_ns: Figure
    remote_ns: Figure | None
    source: str
    remote_distance: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "local_ns", _figure("latency local_ns", self.local_ns, 0, 1e6, "ns"))
        if self.remote_ns is not None:
            remote = _figure("latency remote_ns", self.remote_ns, 0, 1e6, "ns")
            object.__setattr__(self, "remote_ns", remote)
            if (figure_points(remote)[0] < figure_points(self.local_ns)[0]
                    or figure_points(remote)[-1] < figure_points(self.local_ns)[-1]):
                raise ConfigError(
                    f"latency remote_ns ({self.remote_ns}) is smaller than local_ns ({self.local_ns})"
                )
        if self.remote_distance is not None:
            _check_int("latency", "remote_distance", self.remote_distance, LOCAL_DISTANCE + 1,
                       MAX_DISTANCE)
            if self.remote_ns is None:
                raise ConfigError("latency remote_distance: given without remote_ns")
        if not isinstance(self.source, str) or not self.source.strip():
            raise ConfigError("latency source: a citation for the figures is required")

    def at(self, local_ns: float, remote_ns: float | None) -> MemoryLatency:
        """This latency with scalar figures (one point of the band)."""
        return replace(self, local_ns=local_ns, remote_ns=remote_ns)


@dataclass(frozen=True)
class CoreCost:
    """The per-core figures of the cost model (a preset's [cost] table).

    ``base_cpi``: cycles per instruction when every access hits the L1s (a
    Figure).  ``icache_hit_rate``/``dcache_hit_rate``: optional fixed hit
    rates, used only by the counts-only formula emu/hw/cost.py fast_cost();
    a run's cost never uses them (its miss rates come from the run).
    """

    clock_ghz: float
    base_cpi: Figure
    icache_hit_rate: float | None = None
    dcache_hit_rate: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        _check_number("cost clock_ghz", self.clock_ghz, 0, 100, "GHz")
        object.__setattr__(self, "base_cpi", _figure("cost base_cpi", self.base_cpi, 0, 1000, "cycles"))
        for name in ("icache_hit_rate", "dcache_hit_rate"):
            value = getattr(self, name)
            if value is None:
                continue
            _check_number(f"cost {name}", value, -1, 2, "")
            if not 0 <= value <= 1:
                raise ConfigError(f"cost {name}: must be between 0 and 1, got {value}")
        if not isinstance(self.source, str) or not self.source.strip():
            raise ConfigError("cost source: a citation for the figures is required")


LLC_PLACEMENTS = ("home", "requester")


@dataclass(frozen=True)
class CacheGeometry:
    """The cache hierarchy (a preset's [cache] table): per CPU an L1I, an L1D
    and a unified L2; one last-level cache (SLC) per node; sizes in KiB,
    set-associative.  Latencies: L1/L2 load-to-use in core cycles, the LLC in
    ns; ``remote_llc_hit_ns`` is a hit in another node's LLC slice (None: the
    local hit plus the remote-minus-local DRAM latency, the link's cost).
    ``llc_placement``: "home" (the slice behind the memory's home node, as in
    CMN-based parts) or "requester" (the requesting CPU's node).
    ``data_mlp``: data misses overlap this many at a time (their latency is
    divided by it); instruction misses stall the front end one at a time."""

    line_bytes: int
    l1i_kib: int
    l1i_ways: int
    l1d_kib: int
    l1d_ways: int
    llc_kib: int
    llc_ways: int
    llc_hit_ns: Figure
    source: str
    l2_kib: int = 1024
    l2_ways: int = 8
    l1_hit_cycles: int = 4
    l2_hit_cycles: Figure = 11
    remote_llc_hit_ns: Figure | None = None
    llc_placement: str = "home"
    inclusive_l2: Choice = True
    prefetch_next_line: Choice = (False, True)
    data_mlp: Figure = (1.0, 4.0)

    def __post_init__(self) -> None:
        _check_int("cache", "line_bytes", self.line_bytes, 16, 4096)
        if self.line_bytes & (self.line_bytes - 1):
            raise ConfigError(f"cache line_bytes: must be a power of two, got {self.line_bytes}")
        for level in ("l1i", "l1d", "l2", "llc"):
            _check_int("cache", f"{level}_kib", getattr(self, f"{level}_kib"), 1, 1 << 20)
            _check_int("cache", f"{level}_ways", getattr(self, f"{level}_ways"), 1, 64)
            self.sets(level)
        _check_int("cache", "l1_hit_cycles", self.l1_hit_cycles, 0, 1000)
        fig = object.__setattr__
        fig(self, "llc_hit_ns", _figure("cache llc_hit_ns", self.llc_hit_ns, -1, 1e6, "ns"))
        fig(self, "l2_hit_cycles", _figure("cache l2_hit_cycles", self.l2_hit_cycles, -1, 1e6, "cycles"))
        if self.remote_llc_hit_ns is not None:
            fig(self, "remote_llc_hit_ns",
                _figure("cache remote_llc_hit_ns", self.remote_llc_hit_ns, -1, 1e6, "ns"))
        fig(self, "data_mlp", _figure("cache data_mlp", self.data_mlp, 0, 1000, ""))
        if figure_points(self.data_mlp)[0] < 1:
            raise ConfigError(f"cache data_mlp: must be >= 1, got {self.data_mlp}")
        for name in ("llc_hit_ns", "l2_hit_cycles"):
            if figure_points(getattr(self, name))[0] < 0:
                raise ConfigError(f"cache {name}: must be >= 0, got {getattr(self, name)}")
        if self.llc_placement not in LLC_PLACEMENTS:
            raise ConfigError(f"cache llc_placement: must be home or requester, got {self.llc_placement!r}")
        fig(self, "inclusive_l2", _choice("cache inclusive_l2", self.inclusive_l2))
        fig(self, "prefetch_next_line", _choice("cache prefetch_next_line", self.prefetch_next_line))
        if not isinstance(self.source, str) or not self.source.strip():
            raise ConfigError("cache source: a citation for the figures is required")

    def sets(self, level: str) -> int:
        """Number of sets of ``level`` ("l1i", "l1d", "l2" or "llc"): a power of two."""
        size, ways = getattr(self, f"{level}_kib") * 1024, getattr(self, f"{level}_ways")
        sets, rest = divmod(size, self.line_bytes * ways)
        if rest or sets < 1 or sets & (sets - 1):
            raise ConfigError(
                f"cache {level}: {size // 1024} KiB / ({self.line_bytes} B x {ways} ways) "
                "is not a power-of-two number of sets"
            )
        return sets


def regular_distances(nodes: int, remote: int = REMOTE_DISTANCE) -> Distances:
    """A SLIT with LOCAL_DISTANCE on the diagonal and ``remote`` everywhere else."""
    return tuple(
        tuple(LOCAL_DISTANCE if i == j else remote for j in range(nodes)) for i in range(nodes)
    )


def nearest_remote(distances: Distances) -> int:
    """The smallest off-diagonal distance (REMOTE_DISTANCE for a one-node matrix)."""
    remote = [d for i, row in enumerate(distances) for j, d in enumerate(row) if i != j]
    return min(remote) if remote else REMOTE_DISTANCE


def resize_distances(distances: Distances, nodes: int) -> Distances:
    """Fit a preset's SLIT to a different node count.

    The rule: when shrinking, keep the leading nodes x nodes block (the real
    machine's distances between its first ``nodes`` nodes, itself a valid
    SLIT); when growing, use LOCAL_DISTANCE on the diagonal and the preset's
    nearest remote distance everywhere else, since nothing published says how
    a larger version of the machine would be wired.
    """
    if nodes <= len(distances):
        return tuple(tuple(row[:nodes]) for row in distances[:nodes])
    return regular_distances(nodes, nearest_remote(distances))


@dataclass(frozen=True)
class Topology:
    """Nodes, CPUs and RAM of one emulated machine; validated on construction."""

    name: str
    nodes: int
    cpus_per_node: int
    ram_bytes: int
    distances: Distances
    source: str = ""
    hardware_cpus_per_node: int | None = None
    latency: MemoryLatency | None = field(default=None)
    cost: CoreCost | None = field(default=None)
    cache: CacheGeometry | None = field(default=None)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("topology name: must be a non-empty string")
        if any(unicodedata.category(c)[0] == "C" or c in "\u2028\u2029" for c in self.name):
            # It is printed in reports and error messages: no terminal control codes.
            raise ConfigError(f"topology name {self.name!r}: must be printable text")
        where = f"machine '{self.name}'"
        _check_int(where, "nodes", self.nodes, 1, MAX_NODES)
        _check_int(where, "cpus_per_node", self.cpus_per_node, 1, MAX_CPUS)
        if self.nodes * self.cpus_per_node > MAX_CPUS:
            raise ConfigError(
                f"{where}: nodes x cpus_per_node = {self.nodes * self.cpus_per_node} CPUs, "
                f"more than the {MAX_CPUS} arm64 NR_CPUS allows"
            )
        _check_int(where, "ram_bytes", self.ram_bytes, MIN_NODE_RAM, MAX_NODE_RAM)
        if self.ram_bytes % NODE_RAM_ALIGN:
            raise ConfigError(
                f"{where}: ram_bytes {self.ram_bytes:#x} per node is not a multiple of 64 KiB"
            )
        if self.hardware_cpus_per_node is not None:
            _check_int(where, "hardware_cpus_per_node", self.hardware_cpus_per_node, 1, 1 << 20)
        if not isinstance(self.source, str):
            raise ConfigError(f"{where}: source must be a string")
        if self.latency is not None and not isinstance(self.latency, MemoryLatency):
            raise ConfigError(f"{where}: latency must be a MemoryLatency")
        if self.cost is not None and not isinstance(self.cost, CoreCost):
            raise ConfigError(f"{where}: cost must be a CoreCost")
        if self.cache is not None and not isinstance(self.cache, CacheGeometry):
            raise ConfigError(f"{where}: cache must be a CacheGeometry")
        object.__setattr__(self, "distances", _checked_distances(where, self.nodes, self.distances))

    @classmethod
    def uniform(cls, name: str, nodes: int, cpus_per_node: int, ram_bytes: int,
                remote: int = REMOTE_DISTANCE, source: str = "") -> Topology:
        """A machine whose nodes are all ``remote`` apart (default REMOTE_DISTANCE)."""
        _check_int(f"machine '{name}'", "nodes", nodes, 1, MAX_NODES)
        return cls(name, nodes, cpus_per_node, ram_bytes, regular_distances(nodes, remote), source)

    @property
    def n_cpus(self) -> int:
        return self.nodes * self.cpus_per_node

    @property
    def total_ram_bytes(self) -> int:
        return self.nodes * self.ram_bytes

    def cpu_to_node(self, cpu: int) -> int:
        """The node of ``cpu`` (Linux's cpu_to_node())."""
        if not 0 <= cpu < self.n_cpus:
            raise ConfigError(f"cpu {cpu} does not exist (machine has CPUs 0-{self.n_cpus - 1})")
        return cpu // self.cpus_per_node

    def node_cpus(self, node: int) -> range:
        """The CPUs of ``node``, in order."""
        self._check_node(node)
        first = node * self.cpus_per_node
        return range(first, first + self.cpus_per_node)

    def distance(self, from_node: int, to_node: int) -> int:
        """SLIT distance from ``from_node`` to ``to_node`` (Linux's node_distance())."""
        self._check_node(from_node)
        self._check_node(to_node)
        return self.distances[from_node][to_node]

    def resized(self, nodes: int | None = None, cpus_per_node: int | None = None,
                ram_bytes: int | None = None) -> Topology:
        """This machine with some dimensions overridden (see resize_distances for the SLIT)."""
        changes: dict[str, object] = {}
        if cpus_per_node is not None:
            changes["cpus_per_node"] = cpus_per_node
        if ram_bytes is not None:
            changes["ram_bytes"] = ram_bytes
        if nodes is not None and nodes != self.nodes:
            _check_int(f"machine '{self.name}'", "nodes", nodes, 1, MAX_NODES)
            changes["nodes"] = nodes
            changes["distances"] = resize_distances(self.distances, nodes)
            rule = "leading block kept" if nodes < self.nodes else (
                f"10 local, {nearest_remote(self.distances)} (nearest remote) elsewhere"
            )
            note = f"distances resized from {self.nodes} to {nodes} nodes: {rule}"
            changes["source"] = f"{self.source}; {note}" if self.source else note
        return replace(self, **changes) if changes else self

    def _check_node(self, node: int) -> None:
        if not 0 <= node < self.nodes:
            raise ConfigError(f"node {node} does not exist (machine has nodes 0-{self.nodes - 1})")


def _check_int(where: str, name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: {name} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise ConfigError(f"{where}: {name} must be between {low} and {high}, got {value}")


def _check_number(what: str, value: object, low: float, high: float, unit: str) -> None:
    """``value`` must be a real number strictly between ``low`` and ``high`` (NaN is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{what}: expected a number, got {type(value).__name__}")
    if not low < value < high:
        unit = f" {unit}" if unit else ""
        raise ConfigError(f"{what}: must be > {low:g} and < {high:g}{unit}, got {value}")


def _checked_distances(where: str, nodes: int, distances: object) -> Distances:
    if not isinstance(distances, list | tuple) or len(distances) != nodes:
        size = len(distances) if isinstance(distances, list | tuple) else type(distances).__name__
        raise ConfigError(f"{where}: distances must be a {nodes}x{nodes} matrix, got {size} rows")
    rows = []
    for i, row in enumerate(distances):
        if not isinstance(row, list | tuple) or len(row) != nodes:
            got = len(row) if isinstance(row, list | tuple) else type(row).__name__
            raise ConfigError(f"{where}: distances row {i} must have {nodes} entries, got {got}")
        for j, d in enumerate(row):
            if isinstance(d, bool) or not isinstance(d, int):
                raise ConfigError(
                    f"{where}: distances[{i}][{j}] must be an integer, got {type(d).__name__}"
                )
            if i == j and d != LOCAL_DISTANCE:
                raise ConfigError(
                    f"{where}: distances[{i}][{i}] must be {LOCAL_DISTANCE} (LOCAL_DISTANCE), got {d}"
                )
            if i != j and not LOCAL_DISTANCE < d <= MAX_DISTANCE:
                raise ConfigError(
                    f"{where}: distances[{i}][{j}] must be in {LOCAL_DISTANCE + 1}..{MAX_DISTANCE} "
                    f"(remote, u8), got {d}"
                )
        rows.append(tuple(row))
    return tuple(rows)
