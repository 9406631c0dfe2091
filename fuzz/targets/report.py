"""Fuzz target ``report``: the JSON reports ``ktext-emu compare A.json B.json``
reads (emu/compare.py through the command's own function, emu/cli/compare.py).

Seeds are real reports made once per process by the in-process API (a
2-node syscall comparison, a 4-node dbsim run with ``--detail cache``) and a
version 1 report made by densifying the first.  They are damaged
structurally (keys dropped, renamed with control characters or duplicated,
values swapped for huge, negative, float, bool, NaN or infinite numbers,
giant or malformed node keys, deep nesting, long strings of control
characters, ``machine.nodes`` claims), textually (fuzz/mutate.py) and
replaced by raw bytes.

An input's first byte says what is compared: 0 mod 3, the rest with itself;
1 mod 3, two reports (a 4-byte little-endian length, A, then B) both ways;
2 mod 3, a report with its own version 1 form (made here when the report's
by-node figures are canonical, else with itself).  Properties: only
ConfigError or OutputError comes out; the printed text holds no control
characters but newlines; a report compared with itself, or with its version 1
form, shows no difference; A against B and B against A count the same
differences; one case raises the process's peak memory by at most
``MAX_CASE_GROWTH`` plus 256 bytes per input byte (the supervisor's
address-space cap is the hard limit).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import io
import json
import math
import resource
import shutil
import tempfile
import unicodedata
from pathlib import Path

from hypothesis import strategies as st

from emu.errors import ConfigError, OutputError
from fuzz.harness import PropertyViolation, Target
from fuzz.mutate import damaged_bytes, damaged_text, utf8

MAX_CASE_GROWTH = 64 << 20
GROWTH_PER_INPUT_BYTE = 256
"""One case may add ``MAX_CASE_GROWTH`` plus this many bytes per input byte
to the process's peak RSS (a parsed report takes ~10-20 bytes per byte of
text): more is an allocation by a claim (a node count) or an amplifier (a
long path per leaf), not by the data."""

MAX_DENSE_NODES = 4096  # a v1 form is only made for machines this small

FRAGMENTS = [
    '"ktext_emu_report": 2', '"runs"', '"cpus"', '"machine"', '"nodes"', '"node"', '"window"',
    '"kernel_fetches_by_node"', '"traffic_matrix_bytes"', '"latency_ns_by_distance"',
    '"latency_ns"', '"distances"', '"cost"', '"parameters"', "null", "true", "false", "NaN",
    "Infinity", "-Infinity", "-1", "0", "1e400", "-0.0", "1.5", "9" * 400, "-" + "9" * 400,
    "{}", "[]", '{"999999999": 1}', '{"0": "5"}', '{"01": 1}', '{"\\u00b2": 1}',
    '"\\u001b[2J\\u0007"', '"\\ud800"', '"\\u202e"', "[[[[[[[[", "]]]]", "{{", ":", ",",
]  # fmt: skip

SHARP_VALUES = (
    None, True, False, 0, -1, 1, 2, 1 << 63, -(1 << 63), 10**18, 10**400, -(10**400), 1e308,
    -1e308, 5e-324, -0.0, 0.5, math.nan, math.inf, -math.inf, "", "0", "x" * 5000,
    "\x1b[2J\x07\r\n\u202e\ud800", [], {}, [0], [[]], [None], {"0": 1}, {"999999999": 1},
    {"9" * 60: 1}, {"-1": 1}, {"01": 1}, {"\u00b2": 1}, {"": 1}, {"0": "5"}, {"0": 1.5},
    {"0": -3}, {"0": 10**400}, {"0": math.nan}, {"0": {"0": 1}}, [10**400, -(10**400)],
)  # fmt: skip


SHARP_NUMBERS = (
    -1, -(10**18), 10**400, -(10**400), 1e308, -1e308, math.nan, math.inf, -math.inf, -0.0,
    True, 0.5, 1 << 64,
)  # fmt: skip


BAD_NODE_KEYS = ("1023", "999999999", "9" * 4000, "-0", "-1", "00", " 1", "1 ", "\u0661",
                 "\u00b2", "", "0x1", "1e3")  # fmt: skip


class Pairs(list):
    """An object written with its pairs in this order, keys repeated allowed."""


class Raw(str):
    """JSON text written as is (nesting too deep to build as Python objects)."""


def encode(value: object) -> str:
    """JSON text of ``value`` (NaN and infinities as Python's json writes them)."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Pairs):
        return "{" + ", ".join(f"{json.dumps(k)}: {encode(v)}" for k, v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(encode(item) for item in value) + "]"
    return json.dumps(value)


# -- seeds -------------------------------------------------------------------------------


def _densify_by_node(value: object, nodes: int) -> list | None:
    """A canonical v2 by-node object as v1's dense list, or None when not canonical."""
    if not isinstance(value, dict):
        return None
    dense: list = [0] * nodes
    for key, entry in value.items():
        if not (key.isascii() and key.isdigit() and str(int(key)) == key and int(key) < nodes):
            return None
        if isinstance(entry, bool) or not isinstance(entry, int | float) or not entry \
                or entry != entry:
            return None
        dense[int(key)] = entry
    return dense


def _densify(value: object, nodes: int, key: str = "") -> object:
    """``value`` (part of a run) in version 1's shape; ValueError when a by-node
    figure is not canonical version 2 (then there is no one v1 form)."""
    if key.endswith("_by_node") and isinstance(value, dict):
        dense = _densify_by_node(value, nodes)
        if dense is None:
            raise ValueError(key)
        return dense
    if key == "traffic_matrix_bytes" and isinstance(value, dict):
        rows = [[0] * nodes for _ in range(nodes)]
        for row, entries in value.items():
            dense = _densify_by_node(entries, nodes)
            if dense is None or not any(dense) or not (row.isdigit() and str(int(row)) == row
                                                       and int(row) < nodes):
                raise ValueError(key)
            rows[int(row)] = dense
        return rows
    if isinstance(value, dict):
        return {name: _densify(item, nodes, name) for name, item in value.items()}
    if isinstance(value, list):
        return [_densify(item, nodes) for item in value]
    return value


def version_1(report: object) -> dict | None:
    """The version 1 form of a version 2 report (dense by-node lists, the
    node x node ``latency_ns``), or None when the report has none."""
    if not isinstance(report, dict) or not isinstance(report.get("runs"), list):
        return None
    runs = []
    for run in report["runs"]:
        machine = run.get("machine") if isinstance(run, dict) else None
        nodes = machine.get("nodes") if isinstance(machine, dict) else None
        distances = machine.get("distances") if isinstance(machine, dict) else None
        if type(nodes) is not int or not 1 <= nodes <= MAX_DENSE_NODES:
            return None
        try:
            dense = _densify(run, nodes)
        except (ValueError, RecursionError):
            return None
        parameters = (dense.get("cost") or {}).get("parameters") \
            if isinstance(dense.get("cost"), dict) else None
        if isinstance(parameters, dict) and "latency_ns_by_distance" in parameters:
            by_distance = parameters["latency_ns_by_distance"]
            if not (isinstance(distances, list) and len(distances) == nodes
                    and all(isinstance(row, list) and len(row) == nodes
                            and all(type(d) is int for d in row) for row in distances)
                    and isinstance(by_distance, dict)
                    and all(type(v) is float and v == v for v in by_distance.values())
                    and {str(d) for row in distances for d in row} == set(by_distance)):
                return None
            dense["cost"]["parameters"] = {
                ("latency_ns" if name == "latency_ns_by_distance" else name):
                    ([[by_distance[str(d)] for d in row] for row in distances]
                     if name == "latency_ns_by_distance" else item)
                for name, item in parameters.items()}  # fmt: skip
        runs.append(dense)
    out = {key: value for key, value in report.items() if key != "ktext_emu_report"}
    out["runs"] = runs
    return out


@functools.lru_cache(maxsize=1)
def seed_reports() -> tuple[dict, ...]:
    """Real reports, made once per process (about a second)."""
    from emu.api import RunOptions, run_comparison

    reports = []
    for options in (RunOptions(nodes=2, cpus_per_node=1, iterations=2, workload="syscall"),
                    RunOptions(nodes=4, cpus_per_node=1, iterations=1, workload="dbsim",
                               detail="cache", ktext="on")):  # fmt: skip
        report = run_comparison(options)
        report.complete = True
        reports.append(json.loads(json.dumps(report.to_json())))
    dense = version_1(reports[0])
    assert dense is not None, "the seed report has no version 1 form"
    return (*reports, dense)


@functools.lru_cache(maxsize=1)
def seed_texts() -> tuple[str, ...]:
    from emu.jsonfmt import dumps

    return tuple(dumps(report) for report in seed_reports())


def pack(mode: int, first: bytes, second: bytes = b"") -> bytes:
    if mode % 3 == 1:
        return bytes([mode]) + len(first).to_bytes(4, "little") + first + second
    return bytes([mode]) + first


def unpack(data: bytes) -> tuple[int, bytes, bytes]:
    """(mode, A, B) of an input; B is A but in mode 1 mod 3."""
    mode, body = (data[0], data[1:]) if data else (0, b"")
    if mode % 3 != 1:
        return mode, body, body
    size = int.from_bytes(body[:4].ljust(4, b"\0"), "little")
    return mode, body[4 : 4 + size], body[4 + size :]


# Hostile reports issue 17 named (tests/system/test_inputs_safety.py has each).
HOSTILE = (
    b'{"runs": [{}]}', b"[" * 100_000 + b"]" * 100_000, b'{"runs": []}', b"",
    b'{"ktext_emu_report": 2, "runs": [{"ktext": false, "machine": {"nodes": 1000000000, '
    b'"cpus_per_node": 1, "granule": 4096, "va_bits": 48}, "cpus": [{"node": 999999999, '
    b'"kernel_fetches_by_node": {"999999999": 3}}]}]}',
    b'{"runs": [{"ktext": false, "instructions": ' + b"9" * 5000 + b"}]}",
)  # fmt: skip


def seeds() -> list[bytes]:
    texts = [t.encode() for t in seed_texts()]
    return [pack(0, texts[0]), pack(0, texts[1]), pack(2, texts[0]), pack(2, texts[1]),
            pack(1, texts[0], texts[2]), pack(1, texts[0], texts[1]),
            *(pack(0, text) for text in HOSTILE)]  # fmt: skip


# -- structural damage ---------------------------------------------------------------------


def _paths(value: object, path: tuple = ()) -> list[tuple]:
    """Every place in ``value``: a tuple of keys and indexes from the root."""
    out = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*path, index))
    return out


def _parent(root: object, path: tuple) -> object:
    for step in path[:-1]:
        root = root[step]  # type: ignore[index]
    return root


@st.composite
def sharp_value(draw: st.DrawFn) -> object:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        depth = draw(st.sampled_from((10, 500, 990, 1100, 5000, 100_000)))
        opener = draw(st.sampled_from(("[", '{"a": ')))
        closer = "]" if opener == "[" else "}"
        return Raw(opener * depth + "1" + closer * depth)
    if kind == 1:
        return draw(st.integers())
    if kind == 2:
        return draw(st.floats(allow_nan=True, allow_infinity=True))
    if kind == 3:
        return draw(st.text(max_size=40))
    return draw(st.sampled_from(SHARP_VALUES))


HOT_KEYS = frozenset(("nodes", "node", "ktext", "cpus", "machine", "window", "cost", "runs",
                      "distances", "parameters", "latency_ns_by_distance", "latency_ns",
                      "traffic_matrix_bytes"))  # fmt: skip


def _is_hot(step: object) -> bool:
    return step in HOT_KEYS or str(step).endswith("_by_node")


@st.composite
def damaged_report(draw: st.DrawFn) -> str:
    """A seed report with a few structural edits, as JSON text."""
    report = json.loads(json.dumps(draw(st.sampled_from(seed_reports()))))
    for _ in range(draw(st.integers(1, 4))):
        places = [p for p in _paths(report) if p]
        # The fields compare checks, and the numbers inside them, are hit most.
        hot = [p for p in places if _is_hot(p[-1])]
        path = draw(st.sampled_from(hot) if hot and draw(st.booleans()) else st.sampled_from(places))
        parent, key = _parent(report, path), path[-1]
        op = draw(st.sampled_from(("replace", "replace", "number", "number", "drop", "rename",
                                   "duplicate", "retype", "claim", "node_key", "long_keys")))
        numbers = [p for p in places if isinstance(_parent(report, p)[p[-1]], int | float)]
        hot_numbers = [p for p in numbers if any(_is_hot(step) for step in p)]
        if op == "number" and numbers:
            # A figure's number for a sharp one: the sums and ratios compare makes.
            place = draw(st.sampled_from(hot_numbers) if hot_numbers and draw(st.booleans())
                         else st.sampled_from(numbers))
            _parent(report, place)[place[-1]] = draw(st.sampled_from(SHARP_NUMBERS))
        elif op == "long_keys":
            # Many leaves under a chain of long names: each leaf's path is the
            # chain's whole length (a memory amplifier if paths are kept whole).
            leaves: object = {str(i): i for i in range(draw(st.sampled_from((10, 500, 3000))))}
            name = draw(st.sampled_from(("k", "\x1b", "\u00e9"))) * draw(st.sampled_from((10, 1000, 3000)))
            for _ in range(draw(st.sampled_from((2, 8, 16)))):
                leaves = {name: leaves}
            parent[key] = leaves
        elif op == "replace":
            parent[key] = draw(sharp_value())
        elif op == "drop":
            del parent[key]
        elif op == "rename" and isinstance(parent, dict):
            name = draw(st.sampled_from(("\x1b[31m", "\x00", "a\nb", "\u202e", "\ud800", "",
                                         "9" * 5000, str(key) * 2)))  # fmt: skip
            parent[name] = parent.pop(key)
        elif op == "duplicate" and isinstance(parent, dict):
            pairs = Pairs(parent.items())
            pairs.insert(draw(st.integers(0, len(pairs))), (key, draw(sharp_value())))
            grand = _parent(report, path[:-1]) if len(path) > 1 else None
            if grand is None:
                return encode(pairs)
            grand[path[-2]] = pairs
            return encode(report)  # a Pairs holds no further paths: stop here
        elif op == "retype":
            item = parent[key]
            if isinstance(item, dict):
                parent[key] = list(item.values())
            elif isinstance(item, list):
                parent[key] = {str(i): v for i, v in enumerate(item)}
            else:
                parent[key] = [item]
        elif op == "claim":
            for place in _paths(report):
                if place and place[-1] == "nodes" and isinstance(_parent(report, place), dict) \
                        and isinstance(_parent(report, place)[place[-1]], int):
                    _parent(report, place)[place[-1]] = draw(st.sampled_from(
                        (0, 1, 3, 10**9, 10**18, 10**400)))  # fmt: skip
        elif op == "node_key":
            # An entry of a by-node figure (the window's kernel fetches most: the
            # counts behind each node's local share), set or added.
            figures = [p for p in places if str(p[-1]).endswith("_by_node")
                       and isinstance(_parent(report, p)[p[-1]], dict)]
            fetches = [p for p in figures if p[-1] == "kernel_fetches_by_node"]
            if not figures:
                continue
            place = draw(st.sampled_from(fetches) if fetches and draw(st.booleans())
                         else st.sampled_from(figures))
            node = draw(st.one_of(st.integers(0, 7).map(str), st.sampled_from(BAD_NODE_KEYS)))
            _parent(report, place)[place[-1]][node] = draw(st.one_of(
                st.sampled_from((-1, -1000, -(10**18), -(10**400), 10**400)),
                st.sampled_from((0, 1, 1.5, math.nan, math.inf, True, "1", None, [1], {}))))
    return encode(report)


def strategy() -> st.SearchStrategy[bytes]:
    structural = utf8(damaged_report())
    textual = utf8(st.sampled_from(seed_texts()).flatmap(
        lambda t: damaged_text(t, FRAGMENTS, max_edits=4)))
    byte_level = st.sampled_from(seed_texts()).flatmap(
        lambda t: damaged_bytes(t.encode(), max_edits=4))
    any_report = st.one_of(structural, structural, structural, structural, textual, byte_level,
                           st.binary(max_size=200))
    seed = st.sampled_from(seed_texts()).map(str.encode)
    single = st.tuples(st.sampled_from((0, 2)), any_report).map(lambda mb: pack(*mb))
    pair = st.tuples(st.one_of(any_report, seed), st.one_of(any_report, seed)).map(
        lambda ab: pack(1, *ab))
    return st.one_of(single, single, pair)


# -- one case ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _scratch() -> Path:
    path = Path(tempfile.mkdtemp(prefix="ktext-fuzz-report-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def compare_files(first: Path, second: Path) -> tuple[str, int]:
    """The command's output text and how many differences it counted, run as
    the CLI runs it (emu/cli/compare.py's function, stdout captured)."""
    from emu import compare
    from emu.cli.compare import run_compare

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = run_compare(argparse.Namespace(first=first, second=second))
    if status != 0:
        raise PropertyViolation(f"compare returned status {status} without an error")
    text = out.getvalue()
    _check_shares(text)
    bad = sorted({f"U+{ord(c):04X}" for c in text
                  if (unicodedata.category(c) in ("Cc", "Cs") and c != "\n")})
    if bad:
        raise PropertyViolation(f"control characters in the output: {', '.join(bad[:5])}")
    # The count the last line states, and the headline rows marked as differing.
    a, b = compare.load_report(first), compare.load_report(second)
    _lines, differences = compare.compare(a, b)
    marked = sum(line.startswith("*") for line in text.splitlines())
    return text, differences + marked


def _check_shares(text: str) -> None:
    """Each node's local kernel-fetch share is a share: 0% to 100%, or None."""
    for line in text.splitlines():
        if " local kernel fetches " in line:
            for value in line.split("local kernel fetches", 1)[1].split():
                if value != "None" and not (value.endswith("%") and not value.startswith("-")
                                            and 0.0 <= float(value[:-1]) <= 100.0):
                    raise PropertyViolation(f"a local kernel-fetch share of {value[:40]}")


def _no_difference(text: str, what: str) -> None:
    marked = [line for line in text.splitlines() if line.startswith("*") or " -> " in line]
    if marked or not text.endswith("no other differences\n"):
        shown = (marked or text.splitlines()[-1:] or [""])[0]
        raise PropertyViolation(f"{what} shows a difference: {shown.strip()[:120]}")


def run(data: bytes) -> str:
    mode, first_bytes, second_bytes = unpack(data)
    work = _scratch()
    first, second = work / "a.json", work / "b.json"
    first.write_bytes(first_bytes)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
    try:
        if mode % 3 == 1:
            second.write_bytes(second_bytes)
            _text, forward = compare_files(first, second)
            _text, backward = compare_files(second, first)
            if forward != backward:
                raise PropertyViolation(f"A vs B differs in {forward} place(s), B vs A in "
                                        f"{backward}")  # fmt: skip
            label = "pair compared"
        else:
            label = "compared with itself"
            second.write_bytes(first_bytes)
            if mode % 3 == 2:
                try:
                    dense = version_1(json.loads(first_bytes))
                except (ValueError, RecursionError):
                    dense = None
                if dense is not None:
                    second.write_text(json.dumps(dense))
                    label = "compared with its version 1 form"
            text, _count = compare_files(first, second)
            _no_difference(text, f"a report {label}")
    finally:
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10) - before
        if grown > MAX_CASE_GROWTH + GROWTH_PER_INPUT_BYTE * len(data):
            raise PropertyViolation(f"one case raised peak memory by {grown >> 20} MiB "
                                    f"for {len(data)} input bytes")  # fmt: skip
    return label


TARGET = Target(
    name="report",
    summary="JSON reports (v1 and v2) through `ktext-emu compare A.json B.json`",
    documented=(ConfigError, OutputError),
    run=run,
    strategy=strategy,
    seeds=seeds,
    timeout=10.0,
)
