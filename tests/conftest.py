"""Fixtures shared by every test directory: booted systems of any shape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emu.config import machine_config
from emu.system import RunSpec, System


@pytest.fixture
def make_system() -> Iterator:
    """Factory: make_system(nodes=4, cpus_per_node=2, granule=4096, va_bits=48, **RunSpec)."""
    made: list[System] = []

    def factory(
        nodes: int = 4,
        cpus_per_node: int = 2,
        granule: int = 4096,
        va_bits: int = 48,
        preset: str = "default",
        **spec: object,
    ) -> System:
        config = machine_config(preset, nodes, cpus_per_node, granule=granule, va_bits=va_bits)
        spec.setdefault("iterations", 20)
        system = System(config, RunSpec(**spec))  # type: ignore[arg-type]
        made.append(system)
        return system

    yield factory
    for system in made:
        system.close()
