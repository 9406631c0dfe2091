"""A run's configuration: the frozen MachineConfig (topology, granule, VA size,
kernel command line), machine presets and TOML machine files, with the
``nodes/cpus_per_node/ram_mib`` overrides.  Its command-line options are
emu/cli/args.py's; the kernel command line (``ktext=``) is parsed by
emu/kernel/cmdline.py.

Machine file schema (presets in emu/hw/presets/ use the same one)::

    [machine]                 # required
    name = "my-box"           # optional, default: the file name without .toml
    nodes = 4                 # required
    cpus_per_node = 2         # required
    ram_mib = 64              # optional, per node, default 64
    distances = [[10, 20], ...]   # optional SLIT, default 10 local / 20 remote

    [hardware]                # optional, informational
    cpus_per_node = 80        # the real machine's CPUs per node
    source = "..."            # where the figures come from

    [latency]                 # optional; local_ns and source required
    local_ns = 90.0
    remote_ns = 140.0         # optional: without it remote = local_ns x distance / 10
    remote_distance = 20      # optional: the SLIT distance remote_ns was measured at
    source = "..."            # the citation for the figures

    [cost]                    # optional: the cost model's core figures
    clock_ghz = 3.0
    base_cpi = [0.8, 1.2]     # a figure: a number, or [low, high] where none is published
    icache_hit_rate = 0.99    # optional, only for the counts-only formula fast_cost()
    dcache_hit_rate = 0.95    # optional, likewise
    source = "..."

    [cache]                   # optional: the cache hierarchy (emu/hw/cachemodel.py)
    line_bytes = 64
    l1i_kib = 64
    l1i_ways = 4
    l1d_kib = 64
    l1d_ways = 4
    l2_kib = 1024             # optional (default 1024): private unified L2
    l2_ways = 8               # optional (default 8)
    llc_kib = 32768           # per node
    llc_ways = 16
    l1_hit_cycles = 4         # optional (default 4)
    l2_hit_cycles = 11        # optional figure (default 11)
    llc_hit_ns = 30.0         # a figure
    remote_llc_hit_ns = [80, 120]  # optional figure: a hit in another node's slice
    llc_placement = "home"    # optional: home (default) or requester
    inclusive_l2 = true       # optional choice (default true)
    prefetch_next_line = [false, true]  # optional choice: both simulated
    data_mlp = [1.0, 4.0]     # optional figure: data misses in flight
    source = "..."

Any other table or key, a value of the wrong type, malformed TOML or an
unreadable file is a ConfigError naming the file and the key or line.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from emu.errors import ConfigError
from emu.fileio import read_input_file
from emu.hw.topology import (
    MIB,
    CacheGeometry,
    CoreCost,
    MemoryLatency,
    Topology,
    regular_distances,
)
from emu.kernel.cmdline import ktext_enabled
from emu.tomlfile import located, toml_error

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

PRESETS_PACKAGE = "emu.hw.presets"
DEFAULT_PRESET = "default"
DEFAULT_RAM_MIB = 64

# Translation granule -> PAGE_SHIFT, and the VA sizes arm64's Kconfig offers
# for it (ARM64_VA_BITS_*). 52-bit VAs with 4K/16K pages need LPA2 (v6.9),
# newer than the ktext series' base, so only 64K pages offer 52.
PAGE_SHIFTS = {4096: 12, 16384: 14, 65536: 16}
# The layouts the v3 series names (ktext-series.md 2.8); 52-bit VA (LPA/LVA) is not modelled.
VA_BITS_FOR_GRANULE = {4096: (39, 48), 16384: (36, 47, 48), 65536: (42, 48)}

_SCHEMA: dict[str, dict[str, str]] = {
    "machine": {
        "name": "string",
        "nodes": "integer",
        "cpus_per_node": "integer",
        "ram_mib": "integer",
        "distances": "matrix",
    },
    "hardware": {"cpus_per_node": "integer", "source": "string"},
    "latency": {"local_ns": "figure", "remote_ns": "figure", "remote_distance": "integer",
                "source": "string"},
    "cost": {"clock_ghz": "number", "base_cpi": "figure", "icache_hit_rate": "number",
             "dcache_hit_rate": "number", "source": "string"},
    "cache": {"line_bytes": "integer", "l1i_kib": "integer", "l1i_ways": "integer",
              "l1d_kib": "integer", "l1d_ways": "integer", "l2_kib": "integer",
              "l2_ways": "integer", "llc_kib": "integer", "llc_ways": "integer",
              "l1_hit_cycles": "integer", "l2_hit_cycles": "figure", "llc_hit_ns": "figure",
              "remote_llc_hit_ns": "figure", "llc_placement": "string",
              "inclusive_l2": "choice", "prefetch_next_line": "choice", "data_mlp": "figure",
              "source": "string"},
}
_REQUIRED = {
    "machine": ("nodes", "cpus_per_node"),
    "latency": ("local_ns", "source"),
    "cost": ("clock_ghz", "base_cpi", "source"),
    "cache": ("line_bytes", "l1i_kib", "l1i_ways", "l1d_kib", "l1d_ways", "llc_kib", "llc_ways",
              "llc_hit_ns", "source"),
}


# -- run configuration ----------------------------------------------------


@dataclass(frozen=True)
class MachineConfig:
    """Everything that fixes the emulated machine and its kernel build for one run."""

    topology: Topology
    granule: int = 4096
    va_bits: int = 48
    cmdline: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.topology, Topology):
            raise ConfigError("machine config: topology must be a Topology")
        if isinstance(self.granule, bool) or not isinstance(self.granule, int) \
                or self.granule not in PAGE_SHIFTS:
            raise ConfigError(
                f"granule {self.granule!r}: must be one of 4096, 16384, 65536 (4K, 16K, 64K)"
            )
        allowed = VA_BITS_FOR_GRANULE[self.granule]
        if isinstance(self.va_bits, bool) or not isinstance(self.va_bits, int) \
                or self.va_bits not in allowed:
            raise ConfigError(
                f"va_bits {self.va_bits!r}: {self.granule // 1024}K pages allow "
                f"{', '.join(map(str, allowed))}"
            )
        if not isinstance(self.cmdline, str):
            raise ConfigError("cmdline: must be a string")

    @property
    def page_shift(self) -> int:
        return PAGE_SHIFTS[self.granule]

    @property
    def pgtable_levels(self) -> int:
        """ARM64_HW_PGTABLE_LEVELS(va_bits): translation levels for this VA size."""
        return (self.va_bits - 4) // (self.page_shift - 3)

    @property
    def ktext(self) -> bool:
        """Whether the command line turns kernel text replication on."""
        return ktext_enabled(self.cmdline)


def machine_config(
    preset_or_path: str | os.PathLike[str] = DEFAULT_PRESET,
    nodes: int | None = None,
    cpus_per_node: int | None = None,
    *,
    ram_mib: int | None = None,
    granule: int = 4096,
    va_bits: int = 48,
    cmdline: str = "",
) -> MachineConfig:
    """A MachineConfig from a preset name or a .toml path, with overrides applied."""
    topology = load_topology(preset_or_path, nodes, cpus_per_node, ram_mib=ram_mib)
    return MachineConfig(topology, granule, va_bits, cmdline)


def load_topology(
    preset_or_path: str | os.PathLike[str] = DEFAULT_PRESET,
    nodes: int | None = None,
    cpus_per_node: int | None = None,
    *,
    ram_mib: int | None = None,
) -> Topology:
    """A preset (a bare name) or machine file (a path: contains '/' or ends in .toml),
    with ``--nodes``/``--cpus-per-node``/``--ram-mib`` applied.

    A changed node count resizes the SLIT by topology.resize_distances: the
    leading block when shrinking, 10 local / the preset's nearest remote
    distance elsewhere when growing.
    """
    spec = os.fspath(preset_or_path)
    topology = load_machine_file(spec) if _is_path(spec) else load_preset(spec)
    for name, value in (("--nodes", nodes), ("--cpus-per-node", cpus_per_node),
                        ("--ram-mib", ram_mib)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ConfigError(f"{name} {value!r}: must be a positive integer")
    ram_bytes = None if ram_mib is None else _mib_to_bytes(ram_mib, "--ram-mib")
    return topology.resized(nodes=nodes, cpus_per_node=cpus_per_node, ram_bytes=ram_bytes)


def preset_names() -> tuple[str, ...]:
    root = resources.files(PRESETS_PACKAGE)
    return tuple(sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml")))


def load_preset(name: str) -> Topology:
    names = preset_names()
    if name not in names:
        raise ConfigError(
            f"unknown machine preset '{name}' (presets: {', '.join(names)}; "
            "or give a path to a .toml machine file)"
        )
    text = resources.files(PRESETS_PACKAGE).joinpath(f"{name}.toml").read_text("utf-8")
    return topology_from_toml(text, f"preset {name}.toml", default_name=name)


def load_machine_file(path: str | os.PathLike[str]) -> Topology:
    shown = os.fspath(path)
    try:
        data = read_input_file(path, MAX_MACHINE_FILE_BYTES)
    except OSError as err:
        raise ConfigError(f"{shown}: cannot read machine file: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConfigError(f"{shown}:{line}: invalid TOML: not UTF-8 text") from None
    return topology_from_toml(text, shown, default_name=Path(shown).stem or "machine")


MAX_MACHINE_FILE_BYTES = 1 << 20


def topology_from_toml(text: str, origin: str, default_name: str = "machine") -> Topology:
    """Parse and validate machine-file text; ``origin`` names it in every error."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(toml_error(origin, err)) from None
    except RecursionError:
        raise ConfigError(f"{origin}: invalid TOML: nested too deeply") from None
    for table, body in doc.items():
        if table not in _SCHEMA:
            if isinstance(body, dict):
                raise ConfigError(located(origin, text, table, None,
                                      f"unknown table [{_shown(table)}]"))  # fmt: skip
            raise ConfigError(located(origin, text, None, table,
                                  f"unknown top-level key '{_shown(table)}'"))  # fmt: skip
        if not isinstance(body, dict):
            raise ConfigError(located(origin, text, None, table, f"'{table}' must be a [{table}] table"))
        for key, value in body.items():
            kind = _SCHEMA[table].get(key)
            if kind is None:
                raise ConfigError(located(origin, text, table, key,
                                      f"[{table}] unknown key '{_shown(key)}'"))  # fmt: skip
            if not _has_kind(value, kind):
                raise ConfigError(located(
                    origin, text, table, key,
                    f"[{table}] {key}: expected {_KIND_TEXT[kind]}, got {_toml_type(value)}",
                ))
        for key in _REQUIRED.get(table, ()):
            if key not in body:
                raise ConfigError(located(origin, text, table, None, f"[{table}] missing key '{key}'"))
    if "machine" not in doc:
        raise ConfigError(f"{origin}: missing [machine] table")
    machine, hardware = doc["machine"], doc.get("hardware", {})
    latency = cost = cache = None
    try:
        if "latency" in doc:
            lat = doc["latency"]
            latency = MemoryLatency(lat["local_ns"], lat.get("remote_ns"), lat["source"],
                                    lat.get("remote_distance"))
        if "cost" in doc:
            cost = CoreCost(**doc["cost"])
        if "cache" in doc:
            cache = CacheGeometry(**doc["cache"])
        nodes = machine["nodes"]
        distances = machine.get("distances")
        if distances is None and isinstance(nodes, int) and 1 <= nodes <= 1024:
            distances = regular_distances(nodes)
        return Topology(
            name=machine.get("name", default_name),
            nodes=nodes,
            cpus_per_node=machine["cpus_per_node"],
            ram_bytes=_mib_to_bytes(machine.get("ram_mib", DEFAULT_RAM_MIB), "ram_mib"),
            distances=distances if distances is not None else (),
            source=hardware.get("source", ""),
            hardware_cpus_per_node=hardware.get("cpus_per_node"),
            latency=latency,
            cost=cost,
            cache=cache,
        )
    except ConfigError as err:
        raise ConfigError(f"{origin}: {err}") from None


# -- helpers ---------------------------------------------------------------

_KIND_TEXT = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "figure": "a number or a range [low, high]",
    "choice": "true, false or [false, true]",
    "matrix": "an array of arrays of integers",
}


def _has_kind(value: object, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "figure":
        return _has_kind(value, "number") or (
            isinstance(value, list) and all(_has_kind(v, "number") for v in value))
    if kind == "choice":
        return isinstance(value, bool) or (
            isinstance(value, list) and all(isinstance(v, bool) for v in value))
    return isinstance(value, list) and all(
        isinstance(row, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in row)
        for row in value
    )


def _toml_type(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
             dict: "table"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return "a date/time" if value is not None else "nothing"


def _mib_to_bytes(mib: object, what: str) -> int:
    if isinstance(mib, bool) or not isinstance(mib, int) or not 1 <= mib <= 1 << 20:
        raise ConfigError(f"{what} {mib!r}: must be an integer number of MiB (1-1048576)")
    return mib * MIB


def _shown(name: str) -> str:
    """A table or key name from the file, fit for a one-line message (a quoted TOML
    key may hold newlines or terminal control codes)."""
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")


def _is_path(spec: str) -> bool:
    seps = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return spec.endswith(".toml") or any(s in spec for s in seps)
