"""Hypothesis strategies that damage valid inputs: bytes, text lines and tokens.

Every strategy draws its choices from hypothesis, so the bounded tests in
tests/fuzz shrink a failure to a small damage of a seed, and the fuzz
engine's biases (boundaries, repeats) apply to positions and values alike.
"""

from __future__ import annotations

import re

from hypothesis import strategies as st

INTERESTING = (
    0, 1, 2, 3, 4, 7, 8, 0x10, 0x3F, 0x40, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF,
    0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1,
)  # fmt: skip
"""Values that sit on the edges parsers get wrong."""


def interesting_int(width_bytes: int, extra: tuple[int, ...] = ()) -> st.SearchStrategy[int]:
    """An edge value (or a random one) that fits in ``width_bytes``."""
    limit = (1 << (8 * width_bytes)) - 1
    edges = sorted({v & limit for v in (*INTERESTING, *extra)})
    return st.one_of(st.sampled_from(edges), st.integers(0, limit))


@st.composite
def damaged_bytes(draw: st.DrawFn, blob: bytes, max_edits: int = 8,
                  hot: tuple[int, ...] = ()) -> bytes:
    """``blob`` with a few byte-level edits; ``hot`` offsets (header fields) are favoured."""
    data = bytearray(blob)
    for _ in range(draw(st.integers(1, max_edits))):
        if not data:
            data += draw(st.binary(min_size=1, max_size=16))
            continue
        where = st.integers(0, len(data) - 1)
        if hot:
            where = st.one_of(st.sampled_from([h for h in hot if h < len(data)] or [0]), where)
        op = draw(st.sampled_from(("word", "word", "byte", "flip", "insert", "delete",
                                   "duplicate", "truncate")))
        pos = draw(where)
        if op == "word":
            width = draw(st.sampled_from((2, 4, 8)))
            value = draw(interesting_int(width, (len(data), len(data) - 1, len(data) + 1)))
            chunk = value.to_bytes(width, "little")
            data[pos : pos + width] = chunk[: len(data) - pos] if pos + width > len(data) else chunk
        elif op == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 256))]
        elif op == "duplicate":
            size = draw(st.integers(1, 256))
            data[pos:pos] = data[pos : pos + size]
        else:
            del data[pos:]
    return bytes(data)


_TOKEN = re.compile(r"[A-Za-z_.$][A-Za-z0-9_.$]*|0[xX][0-9a-fA-F]+|\d+|\S")


@st.composite
def damaged_text(draw: st.DrawFn, text: str, fragments: list[str], max_edits: int = 6) -> str:
    """``text`` with a few line- and token-level edits; ``fragments`` are spliced in."""
    lines = text.split("\n")
    pool = st.sampled_from(fragments) if fragments else st.text(max_size=20)
    for _ in range(draw(st.integers(1, max_edits))):
        if not lines:
            lines = [""]
        index = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(("token", "token", "insert_fragment", "delete_line",
                                   "duplicate_line", "swap_lines", "char", "cut")))
        line = lines[index]
        if op == "token":
            tokens = list(_TOKEN.finditer(line))
            if tokens:
                tok = draw(st.sampled_from(tokens))
                replacement = draw(st.one_of(pool, st.just(""), st.sampled_from(
                    [m.group() for m in _TOKEN.finditer(text[:20000])] or [""])))
                lines[index] = line[: tok.start()] + replacement + line[tok.end() :]
        elif op == "insert_fragment":
            at = draw(st.integers(0, len(line)))
            lines[index] = line[:at] + draw(pool) + line[at:]
        elif op == "delete_line":
            del lines[index]
        elif op == "duplicate_line":
            lines.insert(index, line)
        elif op == "swap_lines":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        elif op == "char":
            at = draw(st.integers(0, len(line)))
            lines[index] = line[:at] + draw(st.characters(codec="utf-8")) + line[at:]
        else:
            lines = lines[:index]
    return "\n".join(lines)


def utf8(text_strategy: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    """Text inputs travel as bytes (what a file holds, and what atheris gives)."""
    return text_strategy.map(lambda t: t.encode("utf-8", "surrogatepass"))


def decode(data: bytes) -> str:
    """Input bytes as the text a user's file would give (undecodable bytes kept as escapes)."""
    return data.decode("utf-8", "surrogateescape")
