"""Per-node figures at the scale of a 1024-node machine (issue 17 item 8).

Owns two containers the cost model keeps instead of dense tuples:

- SlitMatrix: a node x node figure (memory latency, DRAM or LLC cycles)
  that depends only on the SLIT distances of the pair (n, h) and (n, n):
  computed once per distinct distance pair (a handful on any real SLIT)
  and indexed lazily as ``matrix[cpu_node][home_node]``.  A point of the
  cost model costs O(distinct distances), not O(nodes^2) Fractions.
- NodeCounts: a per-node count vector that stores only its nonzero
  entries.  A CPU touches a few nodes of a large machine (its own, node 0,
  its task's); every sum over the others is exactly zero.

Both compare equal to the dense tuples they stand for (tests and old
callers keep working), iterate densely, and say how to iterate sparsely
(``items()``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

Value = TypeVar("Value")


class SlitRow(Sequence[Value], Generic[Value]):
    """Row ``node`` of a SlitMatrix: the figure from ``node`` to every home."""

    __slots__ = ("_diagonal", "_distances", "_matrix", "_node")

    def __init__(self, matrix: SlitMatrix[Value], node: int) -> None:
        self._matrix = matrix
        self._node = node
        self._distances = matrix.distances[node]
        self._diagonal = self._distances[node]

    def __len__(self) -> int:
        return len(self._distances)

    def __getitem__(self, home: Any) -> Any:
        if isinstance(home, slice):
            return tuple(self)[home]
        if home < 0:
            home += len(self._distances)
        return self._matrix.cell(self._distances[home], self._diagonal, home == self._node)

    def __iter__(self) -> Iterator[Value]:
        cell, diagonal, node = self._matrix.cell, self._diagonal, self._node
        return (cell(d, diagonal, h == node) for h, d in enumerate(self._distances))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


class SlitMatrix(Sequence[SlitRow[Value]], Generic[Value]):
    """A node x node figure ``value(d(n, h), d(n, n), n == h)`` over a SLIT.

    ``value`` is called at most once per distinct (distance, local distance,
    diagonal) triple; ``matrix[n][h]`` looks the result up.  ``map`` derives
    another figure cell by cell (ns -> cycles) without touching every pair.
    """

    __slots__ = ("_cache", "_value", "distances")

    def __init__(self, distances: Sequence[Sequence[int]],
                 value: Callable[[int, int, bool], Value]) -> None:  # fmt: skip
        self.distances = distances
        self._value = value
        self._cache: dict[tuple[int, int, bool], Value] = {}

    def cell(self, distance: int, local_distance: int, diagonal: bool) -> Value:
        key = (distance, local_distance, diagonal)
        try:
            return self._cache[key]
        except KeyError:
            result = self._cache[key] = self._value(distance, local_distance, diagonal)
            return result

    def at(self, node: int, home: int) -> Value:
        row = self.distances[node]
        return self.cell(row[home], row[node], node == home)

    def map(self, function: Callable[[Value], Any]) -> SlitMatrix[Any]:
        """The figure ``function(self[n][h])`` for every pair, lazily."""
        return SlitMatrix(self.distances, lambda d, local, diagonal: function(
            self.cell(d, local, diagonal)))

    def __len__(self) -> int:
        return len(self.distances)

    def __getitem__(self, node: Any) -> Any:
        if isinstance(node, slice):
            return tuple(self)[node]
        if node < 0:
            node += len(self.distances)
        if not 0 <= node < len(self.distances):
            raise IndexError(node)
        return SlitRow(self, node)

    def __iter__(self) -> Iterator[SlitRow[Value]]:
        return (SlitRow(self, node) for node in range(len(self.distances)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SlitMatrix) and other.distances == self.distances:
            return all(self.cell(*key) == other.cell(*key) for key in self._keys())
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        return hash(tuple(tuple(row) for row in self))

    def _keys(self) -> set[tuple[int, int, bool]]:
        return {(d, row[n], h == n) for n, row in enumerate(self.distances)
                for h, d in enumerate(row)}  # fmt: skip

    def __repr__(self) -> str:
        return f"SlitMatrix({tuple(tuple(row) for row in self)!r})"


class NodeCounts(Sequence[int]):
    """Counts per node, only the nonzero ones stored; reads as a dense tuple
    of ``nodes`` entries (``counts[h]`` is 0 for a node never counted)."""

    __slots__ = ("_nodes", "_values")

    def __init__(self, nodes: int, values: Mapping[int, int] | None = None) -> None:
        self._nodes = nodes
        self._values = {h: v for h, v in (values or {}).items() if v}
        for h in self._values:
            if not 0 <= h < nodes:
                raise IndexError(f"node {h} outside 0..{nodes - 1}")

    @classmethod
    def dense(cls, values: Iterable[int]) -> NodeCounts:
        values = tuple(values)
        return cls._of(len(values), {h: v for h, v in enumerate(values) if v})

    @classmethod
    def _of(cls, nodes: int, nonzero: dict[int, int]) -> NodeCounts:
        """No checks: ``nonzero`` holds only nonzero values of nodes < ``nodes``."""
        counts = cls.__new__(cls)
        counts._nodes = nodes
        counts._values = nonzero
        return counts

    def items(self) -> Iterable[tuple[int, int]]:
        """(node, count) of every nonzero count, in node order."""
        return sorted(self._values.items())

    def as_dict(self) -> dict[int, int]:
        return dict(self.items())

    def minus(self, earlier: NodeCounts | Sequence[int]) -> NodeCounts:
        if not isinstance(earlier, NodeCounts):
            earlier = NodeCounts.dense(earlier)
        if len(earlier) != self._nodes:
            raise ValueError("NodeCounts.minus: the two have different node counts")
        values = dict(self._values)
        for h, v in earlier._values.items():
            values[h] = values.get(h, 0) - v
        return NodeCounts._of(self._nodes, {h: v for h, v in values.items() if v})

    def total(self) -> int:
        return sum(self._values.values())

    def __len__(self) -> int:
        return self._nodes

    def __getitem__(self, node: Any) -> Any:
        if isinstance(node, slice):
            return tuple(self)[node]
        if node < 0:
            node += self._nodes
        if not 0 <= node < self._nodes:
            raise IndexError(node)
        return self._values.get(node, 0)

    def __iter__(self) -> Iterator[int]:
        get = self._values.get
        return (get(h, 0) for h in range(self._nodes))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NodeCounts):
            return self._nodes == other._nodes and self._values == other._values
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(other) == self._nodes and all(a == b for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self)) if self._nodes <= 16 else f"NodeCounts({self._nodes}, {self.as_dict()})"


def nonzero_items(values: Sequence[Any]) -> Iterable[tuple[int, Any]]:
    """(node, value) of the nonzero entries of a NodeCounts or a dense sequence
    (the zeros of a dense one are skipped at C speed)."""
    if isinstance(values, NodeCounts):
        return values.items()
    return [(h, values[h]) for h in itertools.compress(range(len(values)), values)]


__all__ = ["NodeCounts", "SlitMatrix", "SlitRow", "nonzero_items"]
