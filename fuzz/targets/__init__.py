"""The registry of fuzz targets: one module per input kind, each exporting TARGET."""

from __future__ import annotations

import importlib

from fuzz.harness import Target

TARGET_NAMES = ("elf", "asm", "ldscript", "toml", "pagetable", "ldst", "boot", "sweep", "replay", "report")
HIDDEN_TARGETS = ("selftest",)  # fails on purpose; not part of --target all


def get_target(name: str) -> Target:
    if name not in TARGET_NAMES + HIDDEN_TARGETS:
        raise KeyError(f"unknown fuzz target {name!r} (targets: {', '.join(TARGET_NAMES)})")
    return importlib.import_module(f"fuzz.targets.{name}").TARGET
