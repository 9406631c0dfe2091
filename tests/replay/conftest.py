"""Fixtures of the replay tests: ``ktext-emu`` in process (the excerpts' paths
are in replay_testdata.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture
def ktext_emu() -> Callable[[list[str]], int]:
    """``ktext-emu`` in process: emu.cli.main."""
    from emu.cli import main

    return main
