"""Fuzz target ``toml``: machine files (emu.config.load_machine_file /
topology_from_toml), the ``--nodes/--cpus-per-node/--ram-mib`` overrides, and
MachineConfig on the result.

Inputs are the shipped presets damaged line- and token-wise, documents
generated from the machine-file schema with values of every TOML type
(huge, negative, NaN, nested arrays, dates, inline tables), and raw bytes.
Each input is written to a file and read the way ``--machine FILE.toml``
reads it. Properties: only ConfigError comes out, and it names the file; a
Topology that loads is self-consistent (square SLIT with 10 on the diagonal,
node-major cpu_to_node, limits kept), also after overrides.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import math
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from hypothesis import strategies as st

from emu import config
from emu.config import PRESETS_PACKAGE, MachineConfig, load_machine_file, preset_names
from emu.errors import ConfigError
from emu.hw.topology import LOCAL_DISTANCE, MAX_CPUS, MAX_DISTANCE, MAX_NODES, Topology
from fuzz.harness import PropertyViolation, Target
from fuzz.mutate import damaged_text, utf8

FRAGMENTS = [
    "[machine]", "[hardware]", "[latency]", "[cost]", "[cache]", "[bogus]", "[[machine]]",
    "[machine.sub]", "nodes", "cpus_per_node", "ram_mib", "distances", "name", "source", "=",
    "0", "1", "-1", "1024", "1025", "4096", "4097", "1048576", "9223372036854775807",
    "-9223372036854775808", "1e309", "nan", "inf", "-inf", "0.5", "true", "\"\"", "\" \"",
    "'x'", "\"\"\"", "[]", "[[]]", "[[10]]", "[[10, 20], [20, 10]]", "[[10, 256], [256, 10]]",
    "{}", "{ a = 1 }", "1979-05-27T07:32:00Z", "07:32:00", "#", "\n", ",", "[", "]", ".",
    '"a\\nb" = 1', '["x\\u001b[2J"]', 'name = "\\r\\u0007"', "'\u202e'",
]  # fmt: skip


@functools.lru_cache(maxsize=1)
def seed_texts() -> tuple[str, ...]:
    root = resources.files(PRESETS_PACKAGE)
    return tuple(root.joinpath(f"{name}.toml").read_text("utf-8") for name in preset_names())


_SCALARS = st.one_of(
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.sampled_from((0, 1, 2, 10, 11, 255, 256, 1024, 1025, 4096, 4097, 1 << 20, (1 << 20) + 1)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}"
                             for c in value) + '"'  # fmt: skip
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"  # type: ignore[attr-defined]


@st.composite
def generated_document(draw: st.DrawFn) -> str:
    """A syntactically valid TOML machine file built from the current schema."""
    schema = config._SCHEMA
    tables = draw(st.lists(st.one_of(st.sampled_from(sorted(schema)), st.just("extra")),
                           min_size=1, max_size=4, unique=True))  # fmt: skip
    if "machine" not in tables and draw(st.integers(0, 4)):
        tables.insert(0, "machine")
    out = []
    for table in tables:
        keys = sorted(schema.get(table, {"key": "integer"}))
        chosen = draw(st.lists(st.sampled_from(keys), unique=True, max_size=len(keys)))
        if table == "machine" and draw(st.integers(0, 3)):
            chosen = sorted({*chosen, "nodes", "cpus_per_node"})
        out.append(f"[{table}]")
        for key in chosen:
            kind = schema.get(table, {}).get(key)
            if kind == "matrix" and draw(st.booleans()):
                n = draw(st.integers(0, 5))
                value = [[draw(st.sampled_from((10, 11, 20, 255, 256, 0, -1))) for _ in range(n)]
                         for _ in range(draw(st.sampled_from((n, n + 1, max(n - 1, 0)))))]
            elif kind == "integer" and draw(st.booleans()):
                value = draw(st.integers(-2, 5000))
            else:
                value = draw(st.one_of(_SCALARS, st.lists(_SCALARS, max_size=3)))
            out.append(f"{key} = {_toml_value(value)}")
    return "\n".join(out) + "\n"


def strategy() -> st.SearchStrategy[bytes]:
    damaged = st.sampled_from(seed_texts()).flatmap(lambda t: damaged_text(t, FRAGMENTS))
    nested = st.integers(1, 5000).map(lambda n: f"[machine]\nnodes = {'[' * n}1{']' * n}\n")
    return st.one_of(utf8(damaged), utf8(generated_document()), utf8(generated_document()),
                     utf8(nested), st.binary(max_size=300))  # fmt: skip


def seeds() -> list[bytes]:
    return [t.encode("utf-8") for t in seed_texts()]


@functools.lru_cache(maxsize=1)
def _scratch() -> Path:
    path = Path(tempfile.mkdtemp(prefix="ktext-fuzz-toml-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def check_topology(topo: Topology) -> None:
    n = topo.nodes
    if not 1 <= n <= MAX_NODES or not 1 <= topo.n_cpus <= MAX_CPUS:
        raise PropertyViolation(f"{n} nodes x {topo.cpus_per_node} CPUs passed validation")
    if len(topo.distances) != n or any(len(row) != n for row in topo.distances):
        raise PropertyViolation("distance matrix is not square")
    # The edges of the matrix and of the CPU range: all of a 1024-node SLIT would
    # cost this check more than the loader it checks.
    sample = sorted({*range(min(n, 8)), *range(max(n - 8, 0), n)})
    for i in sample:
        for j in range(n):
            d = topo.distance(i, j)
            if (i == j and d != LOCAL_DISTANCE) or (i != j and not 10 < d <= MAX_DISTANCE):
                raise PropertyViolation(f"distance[{i}][{j}] = {d} passed validation")
    for cpu in {*range(min(topo.n_cpus, 64)), *range(max(topo.n_cpus - 64, 0), topo.n_cpus)}:
        node = topo.cpu_to_node(cpu)
        if cpu not in topo.node_cpus(node):
            raise PropertyViolation(f"cpu {cpu} is not among the CPUs of its node {node}")


def run(data: bytes) -> str:
    path = _scratch() / "fuzz.toml"
    path.write_bytes(data)
    try:
        topo = load_machine_file(path)
    except ConfigError as err:
        if not str(err).startswith(str(path)):
            raise PropertyViolation(f"ConfigError does not name the file: {err}") from None
        raise
    check_topology(topo)
    # Overrides and layout picked from the input itself, so a replay repeats them.
    pick = hashlib.sha256(data).digest()
    nodes = (None, 1, 2, 3, MAX_NODES, MAX_NODES + 1, 0)[pick[0] % 7]
    cpus = (None, 1, 2, MAX_CPUS, MAX_CPUS + 1)[pick[1] % 5]
    try:
        resized = topo.resized(nodes=nodes, cpus_per_node=cpus)
    except ConfigError:
        return "topology (override refused)"
    check_topology(resized)
    granule = (4096, 16384, 65536, 8192)[pick[2] % 4]
    va_bits = (36, 39, 42, 47, 48, 52)[pick[3] % 6]
    try:
        MachineConfig(resized, granule, va_bits)
    except ConfigError:
        return "topology (layout refused)"
    return "topology and machine config"


TARGET = Target(
    name="toml",
    summary="machine files (load_machine_file), overrides, MachineConfig",
    documented=(ConfigError,),
    run=run,
    strategy=strategy,
    seeds=seeds,
    timeout=10.0,
)
