"""The verdict: the published sanity ranges (emu/data/sanity), the check of a
run's figures against them, the claimed or refused gain, the band against
the series' 6-17%, and the verdict a ``run`` puts into its JSON and table."""

from __future__ import annotations

import pytest

from emu.api import RunOptions, run_comparison
from emu.errors import ConfigError
from emu.hw.band import SANITY_FIGURES, sanity
from emu.report import format_report
from emu.verdict import (
    SANITY_SCOPE_OFF,
    against_series,
    check_sanity,
    describe_check,
    load_ranges,
    parse_ranges,
    verdict,
)

IN_RANGE = {"kernel_share": 0.2, "frontend_stall_share": 0.3, "cpi": 2.0,
            "l1i_mpki": 20.0, "l2i_mpki": 5.0, "llc_mpki": 2.0}  # fmt: skip
BAND = {"low": 1.05, "mid": 1.07, "high": 1.09}


# -- the ranges file --------------------------------------------------------------------


def test_the_shipped_ranges_name_every_figure_with_its_source() -> None:
    ranges = load_ranges()
    assert [fig.name for fig in ranges.figures] == list(SANITY_FIGURES)
    checked = {fig.name for fig in ranges.figures if fig.checked}
    # issue 12 item 7: the kernel share, the front-end stall share and the CPI
    assert checked == {"kernel_share", "frontend_stall_share", "cpi"}
    for fig in ranges.figures:
        assert fig.source and fig.definition and fig.comparable and fig.cite
        if fig.checked:
            assert fig.low is not None and fig.high is not None and fig.low < fig.high
    assert ranges.series_gain == (0.06, 0.17)
    assert ranges.series_midpoint_within == (0.03, 0.34)


SMALL = """
[figures.kernel_share]
range = [0.1, 0.2]
checked = true
unit = "share"
cite = "a"
source = "s"
definition = "d"
comparable = "c"
"""


def full_file(kernel_share: str = SMALL) -> str:
    rest = "".join(
        f'\n[figures.{name}]\nchecked = false\nunit = "x"\ncite = "a"\nsource = "s"\n'
        f'definition = "d"\ncomparable = "c"\n'
        for name in SANITY_FIGURES if name != "kernel_share"
    )  # fmt: skip
    return kernel_share + rest + "\n[series]\ngain = [0.06, 0.17]\nmidpoint_within = [0.03, 0.34]\n"


def test_a_ranges_file_parses() -> None:
    ranges = parse_ranges(full_file(), "r.toml")
    fig = ranges.figure("kernel_share")
    assert (fig.low, fig.high, fig.checked) == (0.1, 0.2, True)
    assert ranges.figure("cpi").low is None


@pytest.mark.parametrize(("text", "message"), [
    (SMALL.replace("[0.1, 0.2]", "[0.3, 0.2]"), "r.toml:3: range must be [low, high]"),
    (SMALL.replace("[0.1, 0.2]", '"wide"'), "r.toml:3: range must be [low, high]"),
    (SMALL.replace('range = [0.1, 0.2]\n', ""), "is checked but has no range"),
    (SMALL.replace('cite = "a"\n', ""), "r.toml:2: [figures.kernel_share] has no cite"),
    (SMALL.replace("range = [0.1, 0.2]", "range = = 1"), "r.toml:3: invalid TOML"),
])  # fmt: skip
def test_a_bad_ranges_file_names_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_ranges(full_file(text), "r.toml")


def test_a_ranges_file_without_a_figure_or_the_series_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"no \[figures.kernel_share\]"):
        parse_ranges(full_file("").replace("[figures.kernel_share]", "[x]"), "r.toml")
    with pytest.raises(ConfigError, match=r"no \[series\]"):
        parse_ranges(full_file().split("[series]")[0], "r.toml")


# -- check and verdict -------------------------------------------------------------------


def test_every_checked_figure_in_range_claims_the_gain() -> None:
    doc = verdict(BAND, IN_RANGE, machine="altra-2s", workload="dbsim", sanity_scope="s")
    assert doc["claimed"] and doc["failed"] == []
    assert doc["line"] == "replication gains +7.00% (band +5.00%..+9.00%) on altra-2s, dbsim"
    assert doc["gain"] == pytest.approx({"low": 0.05, "mid": 0.07, "high": 0.09})
    rows = {row["figure"]: row for row in doc["sanity_check"]}
    assert rows["cpi"]["in_range"] is True
    assert rows["l1i_mpki"]["in_range"] is None
    assert rows["l1i_mpki"]["why_not_checked"] == "no published range read"


@pytest.mark.parametrize(("figure", "value", "shown"), [
    ("kernel_share", 0.95, "kernel share 95.0% outside 5%..40%"),
    ("kernel_share", 0.01, "kernel share 1.0% outside 5%..40%"),
    ("frontend_stall_share", 0.02, "front-end stall share 2.0% outside 15%..40%"),
    ("cpi", 9.0, "CPI 9.00 outside 0.96..7"),
])  # fmt: skip
def test_a_figure_outside_its_range_refuses_the_gain(figure: str, value: float, shown: str) -> None:
    figures = dict(IN_RANGE, **{figure: value})
    doc = verdict(BAND, figures, machine="m", workload="w", sanity_scope="s")
    assert not doc["claimed"] and doc["failed"] == [figure]
    cite = load_ranges().figure(figure).cite
    assert doc["line"] == f"no gain claimed: {shown} ({cite})"
    assert doc["gain"]["mid"] == pytest.approx(0.07)  # still reported, not claimed


def test_the_range_ends_are_inside() -> None:
    ranges = load_ranges()
    for fig in ranges.figures:
        if fig.checked:
            for value in (fig.low, fig.high):
                rows = check_sanity(dict(IN_RANGE, **{fig.name: value}), ranges)
                assert next(r for r in rows if r["figure"] == fig.name)["in_range"] is True


def test_uncheckable_figures_are_said_not_checked() -> None:
    """replay's case: a kernel-only trace has no meaningful kernel share."""
    figures = dict(IN_RANGE, kernel_share=1.0)
    doc = verdict(BAND, figures, machine="m", workload="trace", sanity_scope="the trace",
                  not_applicable={"kernel_share": "a kernel-only trace"})  # fmt: skip
    assert doc["claimed"]
    assert doc["line"].endswith("(sanity not checked for kernel share)")
    row = doc["sanity_check"][0]
    assert row["checked"] is False and row["why_not_checked"] == "a kernel-only trace"
    assert "kernel share 100.0% (a kernel-only trace)" in describe_check(doc)


def test_no_comparison_claims_nothing() -> None:
    doc = verdict(None, IN_RANGE, machine="m", workload="w", sanity_scope="s")
    assert not doc["claimed"] and doc["series"] is None
    assert doc["line"].startswith("no gain claimed: no ktext-on run")
    empty = verdict(None, dict.fromkeys(SANITY_FIGURES), machine="m", workload="w", sanity_scope="s")
    assert all(row["in_range"] is None for row in empty["sanity_check"])


@pytest.mark.parametrize(("band", "overlaps", "mid_in"), [
    ((1.05, 1.10, 1.20), True, True),    # inside
    ((1.00, 1.04, 1.06), True, True),    # touches 6% at its top
    ((1.001, 1.007, 1.018), False, False),  # the tiny kernel's band
    ((1.18, 1.30, 1.40), False, True),   # above 17%, midpoint within 3-34%
    ((1.00, 1.35, 1.50), True, False),   # overlaps, midpoint above 34%
])  # fmt: skip
def test_the_pass_rule_against_the_series(band: tuple, overlaps: bool, mid_in: bool) -> None:
    result = against_series(dict(zip(("low", "mid", "high"), band, strict=True)))
    assert (result["overlaps"], result["midpoint_in"]) == (overlaps, mid_in)
    assert result["pass"] == (overlaps and mid_in)


# -- the run -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def syscall_report():
    options = RunOptions(machine="altra-2s", workload="syscall", iterations=20, detail="cache")
    return run_comparison(options)


def test_a_run_puts_the_verdict_into_the_ktext_on_cost(syscall_report) -> None:
    off_run, on_run = syscall_report.runs
    off_cost = syscall_report.costs[0]
    assert "verdict" not in off_run["cost"]
    doc = on_run["cost"]["verdict"]
    assert doc["sanity_scope"] == SANITY_SCOPE_OFF
    node0 = sanity(off_cost, nodes=(0,))
    assert {row["figure"]: row["value"] for row in doc["sanity_check"]} == node0
    assert node0 != sanity(off_cost)  # node 1's remote fetches are left out
    assert doc["gain"]["mid"] == pytest.approx(on_run["cost"]["speedup"] - 1)
    # every field the run had before is still there
    assert {"speedup", "gain", "speedup_band", "sanity", "band_over"} <= set(on_run["cost"])
    # the tiny syscall path: almost every instruction is the kernel's
    assert doc["failed"] and "kernel_share" in doc["failed"] and not doc["claimed"]


def test_the_table_ends_with_the_verdict(syscall_report) -> None:
    table = format_report(syscall_report.to_json()).splitlines()
    assert table[-3].startswith("verdict: no gain claimed: kernel share ")
    assert table[-2].startswith("  sanity of node 0 of the ktext-off run")
    assert "published ranges and their sources: emu/data/sanity/server-workloads.toml" in table[-1]


def test_one_node_sanity_is_the_whole_machine() -> None:
    report = run_comparison(RunOptions(machine="altra-2s", nodes=1, workload="syscall",
                                       iterations=20, ktext="off"))  # fmt: skip
    (run,), (cost,) = report.runs, report.costs
    assert sanity(cost, nodes=(0,)) == sanity(cost)
    doc = run["cost"]["verdict"]  # no ktext-on run: the verdict sits on the only run
    assert not doc["claimed"] and doc["gain"] is None
