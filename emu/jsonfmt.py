"""The JSON shape of a report's by-node figures, and the one text writer.

Report version 2 keeps a report proportionate to the machine: a figure of
one CPU or one task "by node" is a sparse object of its nonzero entries keyed
by node number (``{"0": 220263, "3": 12}``), a node x node matrix is a
sparse object of such objects (``{"from": {"to": value}}``).  Version 1 wrote
dense lists (``[220263, 0, 0, 12]``, a matrix as a list of lists); readers take
both through ``by_node``, ``node_items`` and ``matrix_items``.  A leaf
module: hw's ``to_json`` methods and every reader import it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

REPORT_VERSION = 2

Number = int | float
ByNode = Sequence[Any] | Mapping[int, Any]

# What writes a list or a node-keyed object on one line (C's encoder, no spaces
# lost: ", " and ": " as json.dumps(indent=...) writes them inside a line).
_one_line = json.JSONEncoder(separators=(", ", ": ")).encode
_scalar = json.JSONEncoder().encode


def _is_node_key(key: object) -> bool:
    return isinstance(key, str) and key.isdigit()


def sparse_by_node(values: ByNode, convert: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """The nonzero entries of a by-node figure, ``{"node": value}`` in node
    order; ``values`` is a dense sequence (index = node) or a Mapping node ->
    value.  ``convert`` (e.g. ``float`` for Fractions) applies to each kept value."""
    if isinstance(values, Mapping):
        pairs: Iterator[tuple[int, Any]] | list[tuple[int, Any]] = sorted(
            (int(node), value) for node, value in values.items() if value)
    else:
        pairs = ((node, value) for node, value in enumerate(values) if value)
    if convert is None:
        return {str(node): value for node, value in pairs}
    return {str(node): convert(value) for node, value in pairs}


def sparse_matrix(rows: Sequence[Any] | Mapping[int, Any],
                  convert: Callable[[Any], Any] | None = None) -> dict[str, dict[str, Any]]:
    """A node x node matrix (rows of by-node figures, dense or Mappings) as
    ``{"row": {"column": value}}``, nonzero entries and rows only."""
    items = (sorted((int(node), row) for node, row in rows.items())
             if isinstance(rows, Mapping) else enumerate(rows))
    out = {}
    for node, row in items:
        entries = sparse_by_node(row, convert)
        if entries:
            out[str(node)] = entries
    return out


def by_node(value: Any, node: int) -> Any:
    """Entry ``node`` of a by-node figure of either version (0 when absent)."""
    if isinstance(value, dict):
        return value.get(str(node), 0)
    return value[node] if 0 <= node < len(value) else 0


def node_items(value: Any) -> Iterator[tuple[int, Any]]:
    """(node, value) of the nonzero entries of a by-node figure of either version."""
    if isinstance(value, dict):
        return ((int(node), entry) for node, entry in value.items() if entry)
    return ((node, entry) for node, entry in enumerate(value) if entry)


def by_node_total(value: Any) -> Any:
    """The sum over nodes of a by-node figure of either version."""
    return sum(value.values() if isinstance(value, dict) else value)


def matrix_items(value: Any) -> Iterator[tuple[int, int, Any]]:
    """(row, column, value) of the nonzero entries of a node x node matrix of
    either version (list of lists or sparse object of objects)."""
    rows = value.items() if isinstance(value, dict) else enumerate(value)
    for row, entries in rows:
        for column, entry in node_items(entries):
            yield int(row), column, entry


def dense(value: Any, nodes: int) -> list:
    """A by-node figure as a list of ``nodes`` entries (the caller bounds
    ``nodes`` by what it holds: a report's claim is not a bound)."""
    out = [0] * nodes
    for node, entry in node_items(value):
        if node < nodes:
            out[node] = entry
    return out


def _inline(value: Any) -> bool:
    """Written on one line: a list of scalars, or a node-keyed object of scalars."""
    if isinstance(value, list | tuple):
        return not any(isinstance(item, list | tuple | dict) for item in value)
    if isinstance(value, dict):
        return all(_is_node_key(key) and not isinstance(item, list | tuple | dict)
                   for key, item in value.items())
    return True


def _key(key: object) -> str:
    """An object key as json.dumps writes it (3 -> "3", True -> "true")."""
    if isinstance(key, str):
        return _scalar(key)
    return _scalar(_scalar(key))  # int, float, bool, None: their JSON text, quoted


def _write(value: Any, indent: str, out: list[str]) -> None:
    if _inline(value):
        out.append(_one_line(value))
        return
    inner = indent + "  "
    if isinstance(value, dict):
        out.append("{")
        first = True
        for key, item in value.items():
            out.append("\n" + inner if first else ",\n" + inner)
            first = False
            out.append(_key(key))
            out.append(": ")
            _write(item, inner, out)
        out.append("\n" + indent + "}")
    else:
        out.append("[")
        for index, item in enumerate(value):
            out.append("\n" + inner if index == 0 else ",\n" + inner)
            _write(item, inner, out)
        out.append("\n" + indent + "]")


def dumps(document: Any) -> str:
    """``document`` as the reports' JSON text: objects and lists of containers
    indented two spaces a level, a list of scalars or a node-keyed object of
    scalars on one line (a SLIT row, a by-node figure), a newline at the end."""
    out: list[str] = []
    _write(document, "", out)
    out.append("\n")
    return "".join(out)
