"""The generated kernel paths and dbsim workload (emu/blob/synth.py): determinism,
the knobs reaching the text, well-formed code (a DAG of calls, AAPCS64 frames,
only bounded loops), and GNU as accepting it byte for byte like ours."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.blob.asm import assemble_file
from emu.blob.build import kernel_blob_dir
from emu.blob.footprint_data import (
    ISSUE_12,
    default_footprint,
    footprint_json,
    footprint_with,
    load_measured,
)
from emu.blob.synth import ENTRY_FUNCTIONS, MAX_PATHS, Footprint, generate, write_source
from emu.errors import BlobError

SMALL = Footprint(kernel_text_per_iter=3 * 1024, functions_per_path=9, instructions_per_path=500,
                  user_code=4096, user_data=64 * 1024, plans=2, rows_per_query=8,
                  function_sizes=((0.1, 44), (0.5, 200), (0.9, 886)))  # fmt: skip

FUNCTION = re.compile(r"^\t\.type\t(\S+), %function\n\1:\n(.*?)^\t\.size\t\1, ", re.S | re.M)


def functions(text: str) -> dict[str, list[str]]:
    """name -> its instruction and label lines, as generated."""
    return {m.group(1): m.group(2).splitlines() for m in FUNCTION.finditer(text)}


def calls(body: list[str]) -> list[str]:
    return [line.split("//")[0].split()[-1] for line in body if line.startswith("\tbl\t")]


def reachable(graph: dict[str, list[str]], root: str) -> set[str]:
    seen, todo = set(), [root]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += calls(graph[name])
    return seen


def test_same_footprint_same_text_other_seed_other_text():
    assert generate(SMALL) == generate(SMALL)
    assert generate(replace(SMALL, seed=2)) != generate(SMALL)


def test_cache_token_covers_the_knobs_not_the_sources():
    assert SMALL.cache_token() == replace(SMALL, sources=(("x", "y"),)).cache_token()
    assert SMALL.cache_token() != replace(SMALL, user_code=8192).cache_token()


@pytest.mark.parametrize("paths", [1, 3, MAX_PATHS])
def test_one_root_per_syscall_with_the_functions_asked_for(paths):
    fp = replace(SMALL, syscalls_per_iter=paths)
    graph = functions(generate(fp))
    roots = sorted(name for name in graph if name.startswith("sys_synth_"))
    assert roots == [f"sys_synth_{i}" for i in range(paths)]
    for root in roots:
        assert len(reachable(graph, root)) == fp.functions_per_path - ENTRY_FUNCTIONS
    # Leaf helpers are shared: paths overlap in them, and only in them.
    if paths > 1:
        common = reachable(graph, "sys_synth_0") & reachable(graph, "sys_synth_1")
        assert common and all(name.startswith("synth_helper_") for name in common)
    plans = [name for name in graph if re.fullmatch(r"uop_\d+_\d+", name)]
    assert len(plans) == fp.plans * paths


def test_path_shares_split_the_functions():
    fp = replace(SMALL, functions_per_path=30, path_shares=(5168.0, 3224.0, 5576.0))
    graph = functions(generate(fp))
    counts = [len(reachable(graph, f"sys_synth_{i}")) + ENTRY_FUNCTIONS for i in range(3)]
    assert counts == [fp.path_functions(i) for i in range(3)] == [33, 21, 36]


def _well_formed(text: str) -> None:
    graph = functions(text)
    # calls go down a DAG: a depth-first search meets no back edge
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        state[name] = 1
        for child in calls(graph[name]):
            assert child in graph, f"{name} calls undefined {child}"
            assert state.get(child) != 1, f"call cycle through {name} -> {child}"
            if child not in state:
                visit(child)
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name)
    for name, body in graph.items():
        if name.startswith(("workload_", "dbs_")):
            continue
        code = [line.strip() for line in body if line.startswith("\t")]
        if calls(body):  # a frame: stp x29, x30 first, ldp x29, x30 just before the ret
            assert code[0].startswith("stp\tx29, x30, [sp, #-") and code[1] == "mov\tx29, sp"
            ret = code.index("ret")
            assert code[ret - 1].startswith("ldp\tx29, x30, [sp], #")
        assert "ret" in code
        # Backward branches only close counted loops (subs; b.ne to the loop head).
        labels = {line[:-1]: i for i, line in enumerate(body) if line.endswith(":")}
        for index, line in enumerate(body):
            target = line.split()[-1] if line.startswith("\tb") else None
            if target in labels and labels[target] < index and line.split()[0] != "b":
                assert line.startswith("\tb.ne\t") and body[index - 1].startswith("\tsubs\tx15")
                assert target.endswith("_loop")
            elif target in labels and labels[target] < index:  # b back from an error path
                assert target.endswith("_back")


def test_default_footprint_is_well_formed_and_sized():
    fp = default_footprint()
    text = generate(fp)
    _well_formed(text)
    graph = functions(text)
    user = sum(len([ln for ln in body if ln.startswith("\t")])
               for name, body in graph.items() if name.startswith("uop_"))  # fmt: skip
    assert 0.85 * fp.user_code <= 4 * user <= 1.15 * fp.user_code


def test_defaults_name_their_sources():
    fp = default_footprint()
    sources = dict(fp.sources)
    assert {"kernel_text_per_iter", "functions_per_path", "instructions_per_path", "user_code",
            "user_data"} <= set(sources)  # fmt: skip
    if load_measured() is None:
        assert sources["kernel_text_per_iter"] == ISSUE_12
    else:
        assert "debian-6.1-arm64.json" in sources["kernel_text_per_iter"]
        assert fp.function_sizes and len(fp.syscall_names) == fp.syscalls_per_iter


def test_without_the_measured_file_issue_12_figures_are_used():
    fp = default_footprint(measured={"syscalls": {}})
    assert dict(fp.sources)["kernel_text_per_iter"] == ISSUE_12
    assert 13 <= fp.functions_per_path <= 200
    assert 400 <= fp.instructions_per_path <= 8000
    assert 3 * 1536 <= fp.kernel_text_per_iter <= 3 * 36 * 1024


def test_knobs_set_by_the_user_say_so():
    fp = footprint_with({"user_code": 8192, "syscalls_per_iter": 2})
    assert fp.user_code == 8192 and fp.path_shares == () and fp.syscalls_per_iter == 2
    report = footprint_json(fp)
    assert report["sources"]["user_code"] == "set by the user"
    assert report["sources"]["user_data"] == dict(default_footprint().sources)["user_data"]
    with pytest.raises(ValueError, match="no footprint knob"):
        footprint_with({"nope": 1})


@pytest.mark.parametrize("bad", [
    {"syscalls_per_iter": 0}, {"syscalls_per_iter": MAX_PATHS + 1}, {"functions_per_path": 0},
    {"kernel_text_per_iter": 10}, {"user_data": 1000}, {"plans": 0}, {"rows_per_query": 129},
    {"function_sizes": ((0.5, 200), (0.1, 44))}, {"user_code": 10}, {"path_shares": (1.0,)},
    {"path_shares": (1.0, 0.0, 1.0)},
])  # fmt: skip
def test_bad_footprints_are_refused(bad):
    with pytest.raises(BlobError, match="footprint: "):
        replace(SMALL, **bad)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.integers(256, 8192), nfun=st.integers(1, 24), insns=st.integers(1, 3000),
    user_code=st.integers(256, 8192), paths=st.integers(1, 4), plans=st.integers(1, 4),
    rows=st.integers(1, 8), seed=st.integers(0, 2**32), sizes=st.booleans(),
)  # fmt: skip
def test_any_small_footprint_gives_well_formed_code(text, nfun, insns, user_code, paths, plans,
                                                    rows, seed, sizes):  # fmt: skip
    fp = Footprint(kernel_text_per_iter=max(text, 64 * paths), functions_per_path=nfun,
                   instructions_per_path=insns, user_code=user_code, user_data=32 * 1024,
                   syscalls_per_iter=paths, plans=plans, rows_per_query=rows, seed=seed,
                   function_sizes=SMALL.function_sizes if sizes else ())  # fmt: skip
    text_out = generate(fp)
    _well_formed(text_out)
    graph = functions(text_out)
    for index in range(paths):
        assert len(reachable(graph, f"sys_synth_{index}")) == max(1, nfun - ENTRY_FUNCTIONS)


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-as") is None,
                    reason="aarch64-linux-gnu-as is not installed (binutils-aarch64-linux-gnu)")
@pytest.mark.parametrize("fp", [SMALL, replace(SMALL, syscalls_per_iter=5, seed=7,
                                                function_sizes=())], ids=["small", "five-paths"])
def test_gnu_as_accepts_it_and_agrees_with_ours(tmp_path: Path, fp, elf_object_view, object_view):
    source = write_source(fp, tmp_path)
    gnu = tmp_path / "synth.o"
    subprocess.run(["aarch64-linux-gnu-as", "-I", str(kernel_blob_dir()), "-o", str(gnu),
                    str(source)], check=True, capture_output=True, text=True)  # fmt: skip
    theirs, ours = elf_object_view(gnu), object_view(assemble_file(source, (kernel_blob_dir(),)))
    for name in (".text.synth", ".rodata.synth", ".user.text", ".user.data", ".user.bss"):
        assert ours.sections[name] == theirs.sections[name], name
        assert ours.relocations.get(name) == theirs.relocations.get(name), name
    assert ours.symbols == theirs.symbols
