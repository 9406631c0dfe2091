"""Report version 2 (emu/jsonfmt.py): by-node figures of CPUs and tasks
sparse, node x node matrices sparse, latency per SLIT distance; the writer's
text parses back to the document; the size per CPU does not grow with the
node count (issue 17, item 8); compare reads version 1 and 2 alike."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emu.cli import main
from emu.compare import compare, load_report
from emu.hw.cachestats import PER_NODE, STAT_NAMES, CacheStats, stats_row_length
from emu.jsonfmt import (
    by_node,
    by_node_total,
    dense,
    dumps,
    matrix_items,
    node_items,
    sparse_by_node,
    sparse_matrix,
)

# -- the encoder and the accessors ---------------------------------------------------------


@given(st.lists(st.integers(min_value=0, max_value=3) | st.fractions(max_denominator=7),
                max_size=40))
def test_sparse_holds_the_nonzero_entries_of_a_list_or_a_mapping(values):
    as_list = sparse_by_node(values, float)
    as_mapping = sparse_by_node({node: v for node, v in enumerate(values)}, float)
    assert as_list == as_mapping
    assert all(value != 0 for value in as_list.values())
    assert dense(as_list, len(values)) == [float(v) if v else 0 for v in values]
    assert all(by_node(as_list, node) == float(by_node(values, node))
               for node in range(len(values) + 2))
    assert by_node_total(as_list) == pytest.approx(float(sum(values, Fraction(0))))
    assert sorted(node_items(as_list)) == sorted(node_items([float(v) for v in values]))


def test_sparse_matrix_keeps_nonzero_rows_and_entries():
    rows = ((0, 0, 0), (Fraction(1, 2), 0, 3), (0, 0, 0))
    encoded = sparse_matrix(rows, float)
    assert encoded == {"1": {"0": 0.5, "2": 3.0}}
    assert sparse_matrix({1: {0: Fraction(1, 2), 2: 3}, 0: {}}, float) == encoded
    assert sorted(matrix_items(encoded)) == sorted(matrix_items([[0, 0, 0], [0.5, 0, 3.0]]))


def test_cache_detail_is_sparse_and_equals_the_counts():
    nodes = 5
    row = list(range(stats_row_length(nodes)))
    row[len(STAT_NAMES):len(STAT_NAMES) + nodes] = [0, 7, 0, 0, 2]  # llc_fetch_hits_by_node
    stats = CacheStats.from_row(row, nodes)
    doc = stats.to_json()
    assert doc["llc_fetch_hits_by_node"] == {"1": 7, "4": 2}
    for name in PER_NODE:
        assert dense(doc[name], nodes) == list(getattr(stats, name))
        assert 0 not in doc[name].values()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=4) | st.integers(0, 99).map(str), inner, max_size=4),
    max_leaves=30,
)


@given(JSON)
def test_the_writer_parses_back_to_the_document(document):
    assert json.loads(dumps(document)) == document


def test_the_writer_puts_scalar_lists_and_node_objects_on_one_line():
    text = dumps({"distances": [[10, 20], [20, 10]], "by_node": {"0": 3, "7": 1},
                  "named": {"a": 1}, "empty": {}})  # fmt: skip
    assert text.splitlines() == [
        "{", '  "distances": [', "    [10, 20],", "    [20, 10]", "  ],",
        '  "by_node": {"0": 3, "7": 1},', '  "named": {', '    "a": 1', "  },",
        '  "empty": {}', "}",
    ]  # fmt: skip


# -- a run's report --------------------------------------------------------------------------


def _run_json(tmp_path, *argv: str) -> tuple[dict, int]:
    out = tmp_path / "r.json"
    assert main(["run", "--workload", "syscall", "--iterations", "2", "--quiet",
                 "--json", str(out), *argv]) == 0  # fmt: skip
    text = out.read_text()
    return json.loads(text), len(text.encode())


def _sparse_ok(value, nodes: int) -> bool:
    return isinstance(value, dict) and all(
        key.isdigit() and int(key) < nodes and entry != 0 for key, entry in value.items())


def test_version_2_shape(tmp_path):
    report, _ = _run_json(tmp_path, "--nodes", "4", "--cpus-per-node", "2", "--detail", "cache")
    assert report["ktext_emu_report"] == 2
    for run in report["runs"]:
        machine = run["machine"]
        nodes, n_cpus = machine["nodes"], machine["nodes"] * machine["cpus_per_node"]
        assert [len(row) for row in machine["distances"]] == [nodes] * nodes  # the SLIT, dense
        by_node_fields = 0
        for cpu in run["cpus"]:
            for section in (cpu, cpu["setup"], cpu["window"]):
                for key, value in section.items():
                    if key.endswith("_by_node"):
                        assert _sparse_ok(value, nodes), key
                        by_node_fields += 1
        for task in run["tasks"]:
            assert _sparse_ok(task["kernel_fetches_by_node"], nodes)
            assert _sparse_ok(task["fetches_by_node"], nodes)
        cost = run["cost"]
        assert len(cost["node_traffic_bytes"]) == nodes and len(cost["cpu_cycles"]) == n_cpus
        assert len(run["nodes"]) == nodes
        for cpu in cost["cpus"]:
            assert _sparse_ok(cpu["memory_lines_by_node"], nodes)
            for name in PER_NODE:
                assert _sparse_ok(cpu["cache"][name], nodes), name
        matrix = cost["traffic_matrix_bytes"]
        assert all(_sparse_ok(row, nodes) and row for row in matrix.values())
        # Rows of the matrix add up to the dense per-node traffic.
        columns = [0.0] * nodes
        for _, column, value in matrix_items(matrix):
            columns[column] += value
        assert columns == pytest.approx(cost["node_traffic_bytes"])
        parameters = cost["parameters"]
        assert "latency_ns" not in parameters
        assert set(parameters["latency_ns_by_distance"]) == {
            str(d) for row in machine["distances"] for d in row}
        assert by_node_fields == n_cpus * 11


def test_sparse_entries_equal_the_counts(make_system):
    system = make_system(nodes=3, cpus_per_node=2, ktext=True, iterations=5,
                         data_accesses=True, migrate_every=3000)  # fmt: skip
    system.run()
    report = system.report()
    accounting = system.machine.accounting
    for cpu in report["cpus"]:
        counts = accounting.counts(cpu["cpu"])
        assert dense(cpu["kernel_fetches_by_node"], 3) == list(counts.kernel_fetches_by_node)
        assert dense(cpu["fetches_by_node"], 3) == list(counts.fetches_by_node)
        window = accounting.window_counts(cpu["cpu"])
        for name in ("kernel_fetches_by_node", "data_reads_by_node", "data_writes_by_node"):
            assert dense(cpu["window"][name], 3) == list(getattr(window, name)), name
    for task, state in zip(report["tasks"], system.scheduler.tasks, strict=True):
        assert dense(task["kernel_fetches_by_node"], 3) == dense(state.kernel_fetches_by_node, 3)
        assert dense(task["fetches_by_node"], 3) == dense(state.fetches_by_node, 3)


def test_the_size_per_cpu_does_not_grow_with_nodes(tmp_path):
    """16 and 64 nodes of one CPU: past the SLIT (nodes^2, the machine's own
    description) and the per-node lists, the JSON per CPU stays the same size.
    Each CPU here touches its own node and node 0, whatever the node count, so
    its sparse figures hold the same entries; version 1's dense lists grew
    4x from 16 to 64 nodes.  The bound allows 25% for longer node numbers."""
    per_cpu = []
    for nodes in (16, 64):
        report, size = _run_json(tmp_path, "--nodes", str(nodes), "--cpus-per-node", "1")
        slit = sum(len(json.dumps(run["machine"]["distances"])) for run in report["runs"])
        per_node = sum(len(json.dumps(run["nodes"])) + len(json.dumps(run["cost"]["node_traffic_bytes"]))
                       for run in report["runs"])  # fmt: skip
        per_cpu.append((size - slit - per_node) / nodes)
    assert per_cpu[1] <= 1.25 * per_cpu[0], per_cpu


# -- compare: version 1 and version 2 ----------------------------------------------------


def as_version_1(run: dict) -> dict:
    """A version 2 run as version 1 wrote it: dense by-node lists, the
    traffic matrix a list of lists, latency a node x node matrix."""
    nodes, distances = run["machine"]["nodes"], run["machine"]["distances"]

    def walk(value, key=""):
        if isinstance(value, dict):
            if key.endswith("_by_node"):
                return dense(value, nodes)
            if key == "traffic_matrix_bytes":
                matrix = [[0.0] * nodes for _ in range(nodes)]
                for row, column, entry in matrix_items(value):
                    matrix[row][column] = entry
                return matrix
            out = {}
            for name, item in value.items():
                if name == "latency_ns_by_distance":
                    out["latency_ns"] = [[item[str(d)] for d in row] for row in distances]
                else:
                    out[name] = walk(item, name)
            return out
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    return walk(run)


def test_compare_reads_version_1_and_2_alike(tmp_path):
    report, _ = _run_json(tmp_path, "--nodes", "3", "--cpus-per-node", "2")
    old = {**report, "ktext_emu_report": 1, "runs": [as_version_1(r) for r in report["runs"]]}
    assert isinstance(old["runs"][0]["cpus"][0]["kernel_fetches_by_node"], list)
    (tmp_path / "v1.json").write_text(json.dumps(old, indent=2))
    (tmp_path / "v2.json").write_text(dumps(report))
    v1, v2 = load_report(tmp_path / "v1.json"), load_report(tmp_path / "v2.json")
    lines, differences = compare(v1, v2)
    assert differences == 0, lines
    assert sum("local kernel fetches" in line for line in lines) == 3 * len(report["runs"])
    # and a real difference in a sparse entry is still found, by node
    report["runs"][1]["cpus"][1]["kernel_fetches_by_node"]["2"] = 1
    (tmp_path / "v2b.json").write_text(dumps(report))
    lines, differences = compare(v1, load_report(tmp_path / "v2b.json"))
    assert differences == 1 and any("cpus[1].kernel_fetches_by_node.2: None -> 1" in line
                                    for line in lines), lines
