"""Argument types and choices shared by the subcommands' parsers."""

from __future__ import annotations

import argparse

# --granule spellings and their sizes in bytes
GRANULES = {"4k": 4096, "16k": 16384, "64k": 65536}


def _integer(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def non_negative_int(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def positive_int(text: str) -> int:
    value = _integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value
