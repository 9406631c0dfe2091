"""Constants shared by test files (a unique name: several directories have a conftest.py)."""

from pathlib import Path

ASM_DIR = Path(__file__).parent / "system" / "asm"

# The layouts the v3 series replicates (16K/48 is refused, tested on its own).
REPLICATED_LAYOUTS = [(4096, 39), (4096, 48), (16384, 36), (16384, 47), (65536, 42), (65536, 48)]
