"""Every reader of a user's file goes through the one checked path (issue 17,
item 5): a device such as /dev/zero, a FIFO or an oversized file named as any
input of any command is refused at once, in one line.  Each command runs in a
subprocess with a memory cap and a timeout, so a regression (reading
/dev/zero until memory runs out, blocking on a FIFO) fails instead of hanging.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from safety_testlib import BUILD, CONFIG, IO, _one_error_line, cli

from emu.fileio import read_input_file

# -- 5. every reader: devices, FIFOs, oversized files -------------------------------------

@pytest.mark.parametrize("argv", [
    "run --add {bad} --quiet",
    "run --add-user {bad} --quiet",
    "build --add-user {bad} -o {out}",
    "run --machine {bad} --quiet",
    "run --kernel {bad} --quiet",
    "compare {bad} {report}",
    "compare {report} {bad}",
    "sweep {bad}",
    "build {bad} -o {out}",
    "symbols {bad}",
])  # fmt: skip
@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_a_device_or_fifo_input_is_refused_at_once(tmp_path, argv, kind):
    if kind == "device":
        bad = Path("/dev/zero")
    else:
        bad = tmp_path / "input.fifo"
        os.mkfifo(bad)
    report = tmp_path / "r.json"
    report.write_text('{"runs": []}\n')
    args = [part.format(bad=bad, report=report, out=tmp_path / "k.elf") for part in argv.split()]
    result = cli(*args, timeout=60, text=True)
    line = _one_error_line(result.stderr)
    assert result.returncode in (BUILD, CONFIG, IO)
    assert "not a regular file" in line or "does not exist" in line


def test_an_oversized_report_or_grid_is_refused_without_reading_it(tmp_path):
    from emu.compare import MAX_REPORT_BYTES
    from emu.sweep import MAX_GRID_BYTES

    for name, limit, argv in (("r.json", MAX_REPORT_BYTES, ["compare", "{f}", "{f}"]),
                              ("g.toml", MAX_GRID_BYTES, ["sweep", "{f}"])):
        big = tmp_path / name
        with big.open("wb") as handle:
            handle.truncate(limit + 1)  # sparse: costs no disk
        result = cli(*[a.format(f=big) for a in argv], timeout=60, text=True)
        assert "larger than the limit" in _one_error_line(result.stderr)
        assert result.returncode in (CONFIG, IO)


def test_read_input_file_checks_the_open_file(tmp_path):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        read_input_file(fifo, 10)  # opened without blocking, refused by fstat
    small = tmp_path / "s"
    small.write_bytes(b"x" * 11)
    with pytest.raises(OSError, match="larger than the limit of 10 bytes"):
        read_input_file(small, 10)
    assert read_input_file(small, 11) == b"x" * 11


# -- compare: a malformed report is a config error naming what is wrong ------------------

GOOD_RUN = {"ktext": False, "machine": {"nodes": 2, "cpus_per_node": 1, "granule": 4096,
                                        "va_bits": 48},
            "cpus": [{"node": 0, "kernel_fetches_by_node": [5, 0]},
                     {"node": 1, "kernel_fetches_by_node": [1, 4]}]}


@pytest.mark.parametrize(("runs", "needle"), [
    ([{}], "runs[0].ktext"),
    (["a run"], "runs[0]: not an object"),
    ([{**GOOD_RUN, "machine": {}}], "runs[0].machine.nodes"),
    ([{**GOOD_RUN, "machine": {**GOOD_RUN["machine"], "nodes": 10**9}}],
     "runs[0].cpus[0].kernel_fetches_by_node"),  # a claimed size the data does not back
    ([{**GOOD_RUN, "cpus": [{"node": 7, "kernel_fetches_by_node": [0, 0]}]}],
     "runs[0].cpus[0].node"),
    ([GOOD_RUN, {**GOOD_RUN, "cpus": "many"}], "runs[1].cpus"),
    # report v2's sparse by-node objects: every key a node of the machine, every count an integer
    ([{**GOOD_RUN, "cpus": [{"node": 0, "kernel_fetches_by_node": {"999999999": 1}}]}],
     "runs[0].cpus[0].kernel_fetches_by_node: key '999999999' is not a node"),
    ([{**GOOD_RUN, "cpus": [{"node": 0, "kernel_fetches_by_node": {"9" * 5000: 1}}]}],
     "runs[0].cpus[0].kernel_fetches_by_node: key"),  # no int() of 5000 digits
    ([{**GOOD_RUN, "cpus": [{"node": 0, "kernel_fetches_by_node": {"\u00b2": 1}}]}],
     "runs[0].cpus[0].kernel_fetches_by_node: key"),  # a digit to isdigit(), not to int()
    ([{**GOOD_RUN, "cpus": [{"node": 0, "kernel_fetches_by_node": {"0": "5"}}]}],
     "runs[0].cpus[0].kernel_fetches_by_node: entry 0 is not an integer"),
    ([{**GOOD_RUN, "cpus": [{"node": 0, "kernel_fetches_by_node": {"0": 5},
                             "window": {"kernel_fetches_by_node": [1]}}]}],
     "runs[0].cpus[0].window.kernel_fetches_by_node"),  # the counts compare reads
    ([{**GOOD_RUN, "cpus": [{"node": 0, "kernel_fetches_by_node": {"0": 5}, "window": 3}]}],
     "runs[0].cpus[0].window: not an object"),
])  # fmt: skip
def test_a_malformed_report_is_a_config_error_naming_the_field(tmp_path, runs, needle):
    import json

    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"runs": [GOOD_RUN]}))
    bad.write_text(json.dumps({"runs": runs}))
    result = cli("compare", str(good), str(bad), timeout=60, text=True)
    assert result.returncode == CONFIG
    line = _one_error_line(result.stderr)
    assert f"bad.json: {needle}" in line


def test_an_integer_too_long_to_convert_is_a_config_error(tmp_path):
    path = tmp_path / "long.json"
    path.write_text('{"runs": [{"ktext": false, "instructions": ' + "9" * 5000 + "}]}")
    result = cli("compare", str(path), str(path), timeout=60, text=True)
    assert result.returncode == CONFIG, result.stderr
    assert "not a ktext-emu report (Exceeds the limit" in _one_error_line(result.stderr)


def test_a_claimed_node_count_allocates_nothing(tmp_path):
    """A version 2 report claims 10^9 nodes and holds two CPUs: compare reads
    what the report holds (under the 4 GiB cap), one line per node with CPUs."""
    import json

    huge = {**GOOD_RUN, "machine": {**GOOD_RUN["machine"], "nodes": 10**9},
            "cpus": [{"node": 0, "kernel_fetches_by_node": {"0": 5}},
                     {"node": 999_999_999, "kernel_fetches_by_node": {"0": 1, "999999999": 3}}],
            "nodes": [{"node": 10**18}]}  # fmt: skip
    path = tmp_path / "huge.json"
    path.write_text(json.dumps({"ktext_emu_report": 2, "runs": [huge]}))
    result = cli("compare", str(path), str(path), timeout=60, text=True)
    assert result.returncode == 0, result.stderr
    node_lines = [line for line in result.stdout.splitlines() if "local kernel fetches" in line]
    assert [line.split()[1] for line in node_lines] == ["0", "999999999"]
    assert "75.0%" in node_lines[1]


def test_a_deeply_nested_report_is_a_config_error(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    nested_run = tmp_path / "nested.json"
    run = dict(GOOD_RUN, extra=None)
    text = '{"runs": [' + __import__("json").dumps(run)[:-1] + ', "deep": ' + \
        '{"a": ' * 50_000 + "1" + "}" * 50_000 + "}]}"
    nested_run.write_text(text)
    for path in (deep, nested_run):
        result = cli("compare", str(path), str(path), timeout=60, text=True)
        assert result.returncode == CONFIG, result.stderr
        assert "nested too deeply" in _one_error_line(result.stderr)


def test_a_well_formed_report_still_compares(tmp_path):
    import json

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"runs": [GOOD_RUN]}))
    b.write_text(json.dumps({"runs": [dict(GOOD_RUN, instructions=3)]}))
    result = cli("compare", str(a), str(b), timeout=60, text=True)
    assert result.returncode == 0, result.stderr
    assert "instructions" in result.stdout


# -- compare: what the report fuzz target found (fuzz/targets/report.py) -----------------

@pytest.mark.parametrize("where", ["instructions", "by-node entry", "list item"])
def test_a_report_holding_nan_compared_with_itself_shows_no_difference(tmp_path, where):
    """json.loads reads NaN, and NaN != NaN: compare said a report differed
    from itself ("cost.cpus[1].cache.llc_data_hits: nan -> nan")."""
    import json

    run = json.loads(json.dumps(GOOD_RUN))
    if where == "instructions":
        run["instructions"] = float("nan")
    elif where == "by-node entry":
        run["cpus"][0]["fetches_by_node"] = {"1": float("nan")}
    else:
        run["mixed"] = [1, {"a": float("nan")}]
    path = tmp_path / "nan.json"
    path.write_text(json.dumps({"ktext_emu_report": 2, "runs": [run]}))
    assert "NaN" in path.read_text()
    result = cli("compare", str(path), str(path), timeout=60, text=True)
    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stdout.splitlines() if line.startswith("*")]
    assert result.stdout.endswith("no other differences\n")


def test_nan_against_a_number_is_still_a_difference(tmp_path):
    import json

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"runs": [dict(GOOD_RUN, instructions=float("nan"), x=[float("nan")])]}))
    b.write_text(json.dumps({"runs": [dict(GOOD_RUN, instructions=1.0, x=[1.0])]}))
    result = cli("compare", str(a), str(b), timeout=60, text=True)
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("* instructions") for line in result.stdout.splitlines())
    assert "x: [nan] -> [1.0]" in result.stdout


def test_a_value_nested_as_deeply_as_the_reader_allows_compares(tmp_path):
    """A list nested 400 deep (as_version_2 reads ~480) inside one field: the comparison of values
    must not recurse per level (a RecursionError there was exit 70)."""
    import json

    text = json.dumps({"runs": [dict(GOOD_RUN, deep=None)]})
    nested = text.replace('"deep": null', '"deep": ' + "[" * 400 + "1" + "]" * 400)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(nested)
    b.write_text(nested.replace("[1]", "[2]"))
    for second in (a, b):
        result = cli("compare", str(a), str(second), timeout=60, text=True)
        assert result.returncode == 0, result.stderr
    assert "deep: " in result.stdout and " -> " in result.stdout


@pytest.mark.parametrize(("fetches", "needle"), [
    ({"0": 5, "1": -5}, "entry 1 is not an integer >= 0"),  # a local share of -inf..inf
    ({"0": 10**400, "1": 1 - 10**400}, "entry 1 is not an integer >= 0"),  # was OverflowError
    ([5, -1], "missing or not a list of 2 integer(s) >= 0"),
])  # fmt: skip
def test_a_negative_fetch_count_is_a_config_error(tmp_path, fetches, needle):
    import json

    path = tmp_path / "neg.json"
    path.write_text(json.dumps({"runs": [{**GOOD_RUN, "cpus": [
        {"node": 0, "kernel_fetches_by_node": fetches}]}]}))
    result = cli("compare", str(path), str(path), timeout=60, text=True)
    assert result.returncode == CONFIG, result.stderr
    assert f"neg.json: runs[0].cpus[0].kernel_fetches_by_node: {needle}" in \
        _one_error_line(result.stderr)


def test_a_v1_latency_beyond_a_float_is_left_as_written(tmp_path):
    """Version 1's latency_ns read as latency_ns_by_distance: an integer too
    large for a float was an OverflowError (exit 70); now the matrix stays."""
    import json

    run = {**GOOD_RUN, "machine": {**GOOD_RUN["machine"], "distances": [[10, 20], [20, 10]]},
           "cost": {"parameters": {"latency_ns": [[10**400, 1], [1, 10**400]]}}}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"runs": [run]}))
    b.write_text(json.dumps({"runs": [{**run, "cost": {"parameters": {
        "latency_ns": [[90, 180], [180, 90]]}}}]}))
    result = cli("compare", str(a), str(a), timeout=60, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("no other differences\n")
    result = cli("compare", str(a), str(b), timeout=60, text=True)
    assert result.returncode == 0, result.stderr
    assert "cost.parameters.latency_ns: [[1000" in result.stdout  # v1 form kept
    assert "-> None" in result.stdout  # B's became latency_ns_by_distance


def test_a_claimed_node_count_of_thousands_of_digits_is_shortened(tmp_path):
    import json

    path = tmp_path / "big.json"
    path.write_text(json.dumps({"runs": [{**GOOD_RUN, "machine": {**GOOD_RUN["machine"],
                                                                  "nodes": 10**4000}}]}))
    result = cli("compare", str(path), str(path), timeout=60, text=True)
    assert result.returncode == CONFIG, result.stderr
    line = _one_error_line(result.stderr)
    assert "(4001 digits)" in line and len(line) < 300


def test_long_key_chains_over_many_leaves_stay_small(tmp_path):
    """Every leaf kept its whole dotted path: 20 names of 10,000 characters
    over 3,000 leaves (234 KiB) took 1.2 GB.  Paths are now cut with a
    digest of the whole, so distinct leaves stay distinct."""
    import json

    from emu import compare

    def report(changed: int) -> dict:
        leaves: object = {str(i): (-1 if i == changed else i) for i in range(3000)}
        for _ in range(20):
            leaves = {"k" * 10_000: leaves}
        return {"runs": [dict(GOOD_RUN, x=leaves)]}

    paths = compare.flatten(report(-1)["runs"][0])
    assert len(paths) > 3000 and max(len(path) for path in paths) <= compare.MAX_PATH
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(report(-1)))
    b.write_text(json.dumps(report(7)))
    result = cli("compare", str(a), str(b), timeout=60, text=True)
    assert result.returncode == 0, result.stderr
    assert "  1 other field(s) differ:" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) < 300


def test_a_claimed_node_count_is_converted_to_digits_once_per_run(tmp_path, monkeypatch):
    """str() of a 4,299-digit node count takes ~0.2 ms and was done per CPU:
    2 MB of report (50,000 CPUs) took 26 s.  Counted here, not timed."""
    import builtins
    import json

    from emu import compare

    conversions = []

    def counting_str(value: object = "") -> str:
        if isinstance(value, int) and value > 10**100:
            conversions.append(1)
        return builtins.str(value)

    monkeypatch.setattr(compare, "str", counting_str, raising=False)
    run = {**GOOD_RUN, "machine": {**GOOD_RUN["machine"], "nodes": 10**4000},
           "cpus": [{"node": 0, "kernel_fetches_by_node": {"0": 1}, "window": {
               "kernel_fetches_by_node": {}}} for _ in range(1000)]}
    path = tmp_path / "many.json"
    path.write_text(json.dumps({"runs": [run, run]}))
    report = compare.load_report(path)
    assert len(report["runs"]) == 2 and len(conversions) <= 2


@pytest.mark.parametrize("key", ["01", "00", "09"])
def test_a_node_key_with_leading_zeros_is_a_config_error(tmp_path, key):
    """by_node looks entries up as str(node): "01" would be counted in a CPU's
    total but never as node 1's, so it is refused rather than misread."""
    import json

    path = tmp_path / "zero.json"
    path.write_text(json.dumps({"runs": [{**GOOD_RUN, "machine": {**GOOD_RUN["machine"],
                                                                  "nodes": 16}, "cpus": [
        {"node": 1, "kernel_fetches_by_node": {key: 5}}]}]}))  # 2 digits of node number
    result = cli("compare", str(path), str(path), timeout=60, text=True)
    assert result.returncode == CONFIG, result.stderr
    assert f"key '{key}' is not a node of the machine (0..15)" in _one_error_line(result.stderr)


@pytest.mark.parametrize(("version", "told"), [
    ("3", "report version 3 is not"), ("0", "report version 0 is not"),
    ('"2"', "of type str"), ("2.0", "of type float"), ("true", "of type bool"),
    ("null", "of type NoneType"), ("9" * 100, "(a huge integer)"),
], ids=["3", "0", "str", "float", "bool", "null", "huge"])  # fmt: skip
def test_compare_refuses_a_report_version_it_does_not_read(tmp_path, version, told):
    """A report of a later schema is not read as this one (its by-node
    figures may mean something else): one line, status 3, whatever the value."""
    good = tmp_path / "good.json"
    made = cli("run", "--nodes", "2", "--cpus-per-node", "1", "--workload", "syscall",
               "--iterations", "2", "--json", str(good), "--quiet")
    assert made.returncode == 0, made.stderr
    text = good.read_text()
    assert '"ktext_emu_report": 2,' in text
    other = tmp_path / "other.json"
    other.write_text(text.replace('"ktext_emu_report": 2,', f'"ktext_emu_report": {version},', 1))
    result = cli("compare", str(good), str(other))
    assert result.returncode == CONFIG
    assert told in _one_error_line(result.stderr)
