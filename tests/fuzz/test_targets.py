"""Bounded runs of every fuzz target inside the normal test suite.

Each property is the target's own: the input is drawn from the target's
strategy (damaged seeds and generated inputs) and the verdict must be a
clean result or a documented, one-line EmuError, within the target's time
box. ``python -m fuzz`` runs the same targets for minutes.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz.harness import run_case
from fuzz.targets import TARGET_NAMES, get_target

# Examples per target: the slow ones (a 600 KiB kernel ELF, a keystone round
# trip, a link of the shipped kernel) get fewer, keeping the file under ~25 s.
EXAMPLES = {"elf": 60, "asm": 120, "ldscript": 80, "toml": 150, "pagetable": 200, "ldst": 300, "boot": 25,
            "sweep": 100, "replay": 120, "report": 120}  # fmt: skip
# Failures found in files this suite does not own, tolerated until fixed
# (pinned by strict xfail tests when there are any).
KNOWN: dict[str, tuple[str, ...]] = {}


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_every_case_is_a_result_or_a_documented_error(name: str) -> None:
    target = get_target(name)
    seed_verdicts = [run_case(target, seed_input) for seed_input in target.seeds()]
    for verdict in seed_verdicts:
        assert not verdict.failed, f"seed of {name}: {verdict.label}\n{verdict.detail}"
    assert any(v.kind == "ok" for v in seed_verdicts), f"no seed of {name} runs clean"

    @settings(max_examples=EXAMPLES[name], deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(target.strategy())
    def case(data: bytes) -> None:
        verdict = run_case(target, data)
        if any(known in verdict.label for known in KNOWN.get(name, ())):
            return
        assert not verdict.failed, f"{verdict.kind}: {verdict.label}\n{verdict.detail}"

    case()


def test_targets_are_listed_with_a_summary() -> None:
    assert set(TARGET_NAMES) == {"elf", "asm", "ldscript", "toml", "pagetable", "ldst", "boot", "sweep",
                                 "replay", "report"}
    for name in TARGET_NAMES:
        target = get_target(name)
        assert target.name == name and target.summary and target.timeout > 0
    with pytest.raises(KeyError, match="unknown fuzz target"):
        get_target("nosuch")


@pytest.mark.parametrize("mode", [1, 3], ids=["report", "journal"])
def test_sweep_resume_file_nested_too_deeply(mode: int) -> None:
    verdict = run_case(get_target("sweep"), bytes([mode]) + b"[" * 100_000)
    assert not verdict.failed, verdict.label


def test_sweep_grid_key_with_control_characters() -> None:
    verdict = run_case(get_target("sweep"), b'\0[grid]\n"\\u001b" = [1, 2]\n')
    assert not verdict.failed, verdict.label


def test_report_seeds_compare_with_their_version_1_form() -> None:
    """The v1/v2 property is not vacuous: each real seed has a v1 form, with
    dense by-node lists, that compare reads as the seed itself."""
    from fuzz.targets.report import pack, seed_reports, seed_texts, version_1

    for report, text in zip(seed_reports()[:2], seed_texts(), strict=False):
        dense = version_1(report)
        assert dense is not None
        fetches = dense["runs"][0]["cpus"][0]["kernel_fetches_by_node"]
        assert isinstance(fetches, list) and len(fetches) == report["runs"][0]["machine"]["nodes"]
        verdict = run_case(get_target("report"), pack(2, text.encode()))
        assert verdict.kind == "ok" and verdict.label == "compared with its version 1 form"


@pytest.mark.parametrize(("edit", "found"), [
    ('"instructions": NaN', "a report compared with itself shows a difference"),
    ('"deep": ' + "[" * 400 + "1" + "]" * 400, "RecursionError in same()"),
    ('"cpus": [{"node": 0, "kernel_fetches_by_node": {"0": 5000, "1": -1000}}]',
     "a local kernel-fetch share of 125.0%"),
], ids=["nan", "deep-value", "negative-count"])  # fmt: skip
def test_report_findings_stay_fixed(edit: str, found: str) -> None:
    """What the report target found (the text before the fix in ``found``)."""
    run = ('{"ktext": false, "machine": {"nodes": 2, "cpus_per_node": 1, "granule": 4096, '
           '"va_bits": 48}, "cpus": [{"node": 0, "kernel_fetches_by_node": {"0": 5}}], ' + edit + "}")
    from fuzz.targets.report import pack

    verdict = run_case(get_target("report"), pack(0, ('{"runs": [' + run + "]}").encode()))
    assert not verdict.failed, f"{found}: {verdict.label}"
