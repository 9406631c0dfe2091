"""The layering the CLI package and the run API keep (tests/import_graph.py
reads the imports with ast): the library never reaches the CLI, the CLI and
sweep are in no import cycle, and nobody reads argparse's private
``_actions``."""

from __future__ import annotations

from import_graph import PACKAGE, cycles, graph

# Modules issue 15's CLI/API split owns; a cycle through any of them is a regression.
OWNED = ("emu.cli", "emu.api", "emu.run_options", "emu.sweep", "emu.sweep_executors",
         "emu.config", "emu.kernel.cmdline", "emu.tomlfile", "emu.compare", "emu.report")


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
