"""Constants shared by test files (a unique name: several directories have a conftest.py)."""

from pathlib import Path

from emu.blob.synth import Footprint

ASM_DIR = Path(__file__).parent / "system" / "asm"

# The layouts the v3 series replicates (16K/48 is refused, tested on its own).
REPLICATED_LAYOUTS = [(4096, 39), (4096, 48), (16384, 36), (16384, 47), (65536, 42), (65536, 48)]


# A generated footprint small enough for tests (emu/blob/synth.py): a few
# hundred bytes of kernel path per syscall, KiBs of user code and data.
SMALL_FOOTPRINT = Footprint(kernel_text_per_iter=3 * 1024, functions_per_path=8,
                            instructions_per_path=400, user_code=4096, user_data=64 * 1024,
                            plans=2, rows_per_query=8,
                            function_sizes=((0.1, 44), (0.5, 200), (0.9, 886)))
