"""The import graph of ``emu`` (tests/import_graph.py reads every import
with ast, lazy and TYPE_CHECKING ones included): no cycle anywhere, the
layers (hw below kernel and everything above it, blob below hw), the library
never reaching the CLI, no product module over MAX_LINES lines without its
reason at its top, and nobody reading argparse's private ``_actions``."""

from __future__ import annotations

import ast

import pytest
from import_graph import PACKAGE, cycles, graph

# The layers above the machine: the kernel model and everything built on it
# (checks, the system, the run API, the CLI, scenarios, replay, the GDB stub).
ABOVE_HW = ("emu.kernel", "emu.checks", "emu.system", "emu.api", "emu.cli",
            "emu.scenarios", "emu.replay", "emu.gdb")  # fmt: skip
# What each lower layer (a package and all its modules, present and future)
# must never reach, directly or through any module in between.
FORBIDDEN = {
    "emu.hw": ABOVE_HW,
    "emu.blob": ("emu.hw", *ABOVE_HW),
}
MAX_LINES = 900
LONG_REASON = "lines because"  # a longer module's first docstring says "Over N lines because ..."

# Modules issue 15's CLI/API split owns; a cycle through any of them is a regression.
OWNED = ("emu.cli", "emu.api", "emu.run_options", "emu.sweep", "emu.sweep_executors",
         "emu.config", "emu.kernel.cmdline", "emu.tomlfile", "emu.compare", "emu.report")


def _under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    """Every forbidden module a layer reaches, with the import path to it."""
    found = []
    for layer, forbidden in FORBIDDEN.items():
        for start in sorted(name for name in edges if _under(name, (layer,))):
            parent: dict[str, str] = {start: ""}
            todo = [start]
            while todo:
                node = todo.pop()
                for target in sorted(edges.get(node, ())):
                    if target in parent:
                        continue
                    parent[target] = node
                    if _under(target, forbidden):
                        path = [target]
                        while parent[path[-1]]:
                            path.append(parent[path[-1]])
                        found.append(" -> ".join(reversed(path)))
                    else:
                        todo.append(target)
    return found


def _reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in edges[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _is_cli(name: str) -> bool:
    return name == "emu.cli" or name.startswith("emu.cli.")


def test_the_graph_sees_the_cli_package() -> None:
    edges = graph()
    assert "emu.cli.run" in edges["emu.cli"]
    assert "emu.api" in edges["emu.cli.run"]
    assert "emu.api" in edges["emu.sweep_executors"]


def test_no_cycle_through_the_cli_or_the_run_api() -> None:
    for component in cycles(graph()):
        assert not [name for name in component if name.startswith(OWNED)], component


def test_the_library_never_imports_the_cli() -> None:
    edges = graph()
    for start in ("emu.api", "emu.run_options", "emu.sweep", "emu.sweep_executors",
                  "emu.config", "emu.pytest_plugin", "emu.system"):
        assert not [name for name in _reachable(edges, start) if _is_cli(name)], start


def test_no_module_reads_argparse_private_actions() -> None:
    readers = [path.relative_to(PACKAGE.parent) for path in PACKAGE.rglob("*.py")
               if "._actions" in path.read_text(encoding="utf-8")]
    assert readers == []


def test_the_graph_sees_type_checking_and_lazy_imports() -> None:
    edges = graph()
    assert "emu.hw.machine" in edges["emu.hw.costtypes"]  # under TYPE_CHECKING
    assert "emu.blob.asm.state" in edges["emu.blob.asm.cond"]  # under TYPE_CHECKING
    assert "emu.blob.asm.directives" in edges["emu.blob.asm.assembler"]  # a bare ``import``


def test_no_import_cycle_anywhere() -> None:
    assert cycles(graph()) == []


def test_cycles_and_layer_violations_are_found_when_present() -> None:
    edges = {"emu.hw.a": {"emu.hw.b"}, "emu.hw.b": {"emu.errors"}, "emu.errors": set()}
    assert cycles(edges) == [] and layer_violations(edges) == []
    edges["emu.errors"] = {"emu.hw.a"}
    assert cycles(edges) == [["emu.errors", "emu.hw.a", "emu.hw.b"]]
    edges["emu.errors"] = {"emu.system"}
    edges["emu.blob.synth"] = {"emu.hw.physmem"}
    edges["emu.hw.physmem"] = set()
    assert layer_violations(edges) == [
        "emu.hw.a -> emu.hw.b -> emu.errors -> emu.system",
        "emu.hw.b -> emu.errors -> emu.system",
        "emu.blob.synth -> emu.hw.physmem",
    ]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_lower_layer_never_reaches_a_higher_one(layer: str) -> None:
    edges = graph()
    assert any(_under(name, (layer,)) for name in edges)
    assert [path for path in layer_violations(edges) if path.startswith(layer + ".")] == []


def test_no_module_is_long_without_a_reason_at_its_top() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_LINES:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if LONG_REASON not in doc:
                long.append(str(path.relative_to(PACKAGE.parent)))
    assert long == []
