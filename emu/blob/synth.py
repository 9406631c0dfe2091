"""Generated kernel and user code with a real kernel's executed footprint.

Owns the ``Footprint`` knobs and the generator that turns them (plus a seed)
into one AArch64 assembly file: per-syscall kernel paths (``sys_synth_<n>``,
reached through ``sys_call_table`` slots ``__NR_synth_base + n``), each a
call tree of functions with a size distribution, leaf helpers shared between
paths and the .rodata tables they read; and the ``dbsim`` workload's EL0
side, a query executor of generated operator functions over a hash index and
rows in shared user memory (``.user.bss``), making those syscalls between
its operators.  Pure Python and deterministic: the same Footprint gives the
same text, byte for byte.  The defaults and their sources are in
``emu.blob.footprint_data``.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from emu.errors import BlobError
from emu.fileio import atomic_write_text

MAX_PATHS = 8  # sys_call_table slots __NR_synth_base .. + 7 (kernel_blob/sys.S)
ROW_BYTES = 256  # one row: word 0 is its key, the rest payload (4 cache lines; 16 + 3 * 80 bytes)
KEY_MULT = 0x9E3779B1  # key of row r: (r * KEY_MULT) mod 2^32, a bijection
HASH_MULT = 0x9E3779B97F4A7C15
LCG_MULT = 6364136223846793005  # Knuth's MMIX LCG
LCG_INC = 1442695040888963407
MIN_LEAF_INSNS = 6
# What every syscall runs besides its generated path (kernel_blob/entry.S,
# counted): kernel_entry 21, el0_sync 4, el0_svc 8, kernel_exit 22
# instructions, under four symbols (vectors, el0_sync, el0_svc, ret_to_user).
# A real kernel's per-syscall figures include its entry code, so the
# generated path is what is left.
ENTRY_INSNS = 55
ENTRY_FUNCTIONS = 4
KERNEL_FRAME = 48  # x29, x30, x19, x20, two locals
USER_FRAME = 64  # x29, x30, x19-x22, two locals


@dataclass(frozen=True)
class Footprint:
    """What the generated kernel paths and the dbsim workload execute.

    Sizes are bytes.  Every default's source is in footprint_data.py.
    """

    kernel_text_per_iter: int  # distinct kernel text of one workload iteration (all its syscalls)
    functions_per_path: int  # functions one syscall path runs (root + callees + shared leaves)
    instructions_per_path: int  # kernel instructions one syscall path retires (loops make up the rest)
    user_code: int  # dbsim's EL0 operator code, all plans together
    user_data: int  # dbsim's hash index + rows in shared user memory
    syscalls_per_iter: int = 3  # syscall paths one query makes, each its own root
    plans: int = 5  # distinct query plans, cycled: user code per query = user_code / plans
    rows_per_query: int = 100  # consecutive rows a query scans from the probed key
    user_function_bytes: int = 512  # mean size of a generated operator function
    # Kernel function sizes in bytes as (quantile, size) points, e.g. ((0.1, 44),
    # ..., (0.99, 2985)): functions get these static sizes and run only the part
    # the path's text budget allows, the rest being error paths never taken.
    # Empty: log-normal sizes, all of each function run.
    function_sizes: tuple[tuple[float, int], ...] = ()
    # Relative weight of each syscall path (e.g. each real syscall's text per
    # call): path n gets that share of the iteration's text, functions and
    # instructions, scaled so the means stay the knobs above.  Empty: equal.
    path_shares: tuple[float, ...] = ()
    seed: int = 1
    syscall_names: tuple[str, ...] = ()  # real syscalls the paths stand for (labels only)
    sources: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        checks = (
            (1 <= self.syscalls_per_iter <= MAX_PATHS, f"syscalls_per_iter must be 1..{MAX_PATHS}"),
            (self.functions_per_path >= 1, "functions_per_path must be >= 1"),
            (self.kernel_text_per_iter >= 64 * self.syscalls_per_iter,
             "kernel_text_per_iter must be >= 64 bytes per syscall"),
            (self.instructions_per_path >= 1, "instructions_per_path must be >= 1"),
            (self.user_code >= 256, "user_code must be >= 256 bytes"),
            (self.user_data >= 16 * (ROW_BYTES + 16), "user_data must hold at least 16 rows"),
            (self.user_data <= 1 << 30, "user_data must be <= 1 GiB"),
            (self.user_data // (ROW_BYTES + 16) > 2 * self.rows_per_query,
             "user_data must hold more than twice rows_per_query rows"),
            (1 <= self.plans <= 64, "plans must be 1..64"),
            (1 <= self.rows_per_query <= 128, "rows_per_query must be 1..128"),
            (self.user_function_bytes >= 32, "user_function_bytes must be >= 32"),
            (all(0 < q < 1 and size >= 4 for q, size in self.function_sizes)
             and list(self.function_sizes) == sorted(self.function_sizes)
             and all(a[1] <= b[1] for a, b in itertools.pairwise(self.function_sizes)),
             "function_sizes must be increasing (quantile in (0, 1), bytes >= 4) points"),
            (not self.path_shares or (len(self.path_shares) == self.syscalls_per_iter
                                      and all(share > 0 for share in self.path_shares)),
             "path_shares must be empty or one positive weight per syscall"),
        )  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise BlobError(f"footprint: {message}")

    def shares(self) -> list[float]:
        """Each path's share of an iteration's text (they sum to 1)."""
        weights = self.path_shares or (1.0,) * self.syscalls_per_iter
        return [w / sum(weights) for w in weights]

    def path_functions(self, index: int) -> int:
        """Functions path ``index`` runs, its entry code's symbols included."""
        scaled = round(self.functions_per_path * self.syscalls_per_iter * self.shares()[index])
        return max(ENTRY_FUNCTIONS + 1, scaled)

    @property
    def rows(self) -> int:
        """Rows in the table: as many as user_data holds with their index entries."""
        return self.user_data // (ROW_BYTES + 16)

    @property
    def buckets_log2(self) -> int:
        return max(4, (self.rows - 1).bit_length())

    def cache_token(self) -> str:
        """What a cached build of this footprint depends on: the knobs and this generator."""
        digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
        knobs = {k: v for k, v in vars(self).items() if k != "sources"}
        return f"synth {digest} {sorted(knobs.items())}"


# ---------------------------------------------------------------- the model
@dataclass
class Block:
    """A piece of a function body: its lines and how many of them run per call."""

    lines: list[str]
    executed: float  # expected instructions retired per call


@dataclass
class Function:
    name: str
    size: int  # instructions one call may run (the hot part)
    leaf: bool
    cold: int = 0  # instructions of never-taken error paths after the ret
    children: list[str] = field(default_factory=list)  # unconditional calls
    optional: list[str] = field(default_factory=list)  # data-dependent calls to shared leaves
    blocks: list[Block] = field(default_factory=list)
    loop_body: int = 0  # instructions of its loop body (0: no loop)
    loop_trips: int = 0  # base trip count; the data adds 0..3
    loop_table: str = ""
    has_loop: bool = False
    frame_insns: int = 1  # prologue and epilogue (a leaf: its ret)
    cold_lines: list[str] = field(default_factory=list)

    def executed(self) -> float:
        """Expected instructions one call retires in this function itself."""
        total = self.frame_insns + sum(block.executed for block in self.blocks)
        if self.has_loop:
            total += 4 + (self.loop_trips + 1.5) * (self.loop_body + 2)
        return total


def _draw(rng: random.Random, quantiles: tuple[tuple[float, int], ...]) -> float:
    """A size in bytes from the distribution the quantile points describe
    (log-linear between points; 16 bytes at quantile 0, 1.5x the last point at 1)."""
    points = [(0.0, 16.0), *((q, float(b)) for q, b in quantiles), (1.0, 1.5 * quantiles[-1][1])]
    u = rng.random()
    for (q0, b0), (q1, b1) in itertools.pairwise(points):
        if u <= q1:
            t = (u - q0) / (q1 - q0) if q1 > q0 else 0.0
            return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
    return points[-1][1]


def _sizes(rng: random.Random, count: int, total: int, minimum: int,
           quantiles: tuple[tuple[float, int], ...] = ()) -> tuple[list[int], list[int]]:  # fmt: skip
    """``count`` functions: (hot, cold) instructions, the hot parts summing to about ``total``.

    With ``quantiles`` each function's static size is drawn from them and
    the hot parts are scaled down to ``total`` (the rest is cold); without,
    the sizes are log-normal (sigma 1.0, the spread of function sizes in
    compiled C) scaled to ``total``, all hot.
    """
    if count == 0:
        return [], []
    if quantiles:
        static = [max(minimum, round(_draw(rng, quantiles) / 4)) for _ in range(count)]
    else:
        static = [rng.lognormvariate(0.0, 1.0) for _ in range(count)]
    scale = total / sum(static)
    hot = [max(minimum, round(size * scale)) for size in static]
    if not quantiles or scale >= 1:
        return hot, [0] * count
    return hot, [max(0, round(size) - h) for size, h in zip(static, hot, strict=True)]


class _Emitter:
    """Builds function bodies for one flavour (kernel or user)."""

    def __init__(self, rng: random.Random, user: bool, tables: list[tuple[str, int]]) -> None:
        self.rng = rng
        self.user = user
        self.tables = tables  # (label, entries, a power of two >= 8)
        self.rows_bytes = 0  # user: bytes of rows readable at [x21]

    # Blocks read the state in x19 (leaf: x0) and fold results into x20 (leaf: x0).
    def _regs(self, leaf: bool) -> tuple[str, str]:
        return ("x0", "x0") if leaf else ("x19", "x20")

    def alu(self, leaf: bool, count: int) -> Block:
        rng, (state, acc) = self.rng, self._regs(leaf)
        ops = [
            lambda: f"add\tx9, {state}, #{rng.randrange(1, 4096)}",
            lambda: f"eor\tx10, x9, {state}, ror #{rng.randrange(1, 63)}",
            lambda: f"orr\tx11, x10, x9, lsl #{rng.randrange(1, 32)}",
            lambda: f"sub\tx12, x11, {state}, lsr #{rng.randrange(1, 32)}",
            lambda: f"and\tx13, x12, #0x{(1 << rng.randrange(4, 32)) - 1:x}",
            lambda: f"madd\t{acc}, x13, x9, {acc}",
            lambda: f"eor\t{acc}, {acc}, x10",
            lambda: f"add\t{acc}, {acc}, x12, lsl #{rng.randrange(1, 8)}",
        ]
        start = rng.randrange(len(ops))
        return Block([ops[(start + i) % len(ops)]() for i in range(count)], count)

    def rodata(self, leaf: bool) -> Block:
        state, acc = self._regs(leaf)
        label, entries = self.rng.choice(self.tables)
        return Block([
            f"adrp\tx9, {label}",
            f"add\tx9, x9, :lo12:{label}",
            f"and\tx10, {state}, #{entries - 1}",
            "ldr\tx11, [x9, x10, lsl #3]",
            f"add\t{acc}, {acc}, x11",
        ], 5)  # fmt: skip

    def local(self, leaf: bool) -> Block:
        """Stack (non-leaf frames) or per-CPU (kernel) / row (user) data."""
        state, acc = self._regs(leaf)
        if not leaf and self.rng.random() < 0.6:
            slot = 32 if self.user is False else 48
            slot += 8 * self.rng.randrange(2)
            return Block([f"ldr\tx12, [sp, #{slot}]", f"add\tx12, x12, {acc}",
                          f"str\tx12, [sp, #{slot}]"], 3)  # fmt: skip
        if self.user:
            base = "x1" if leaf else "x21"
            offset = 8 * self.rng.randrange(self.rows_bytes // 8)
            return Block([f"ldr\tx12, [{base}, #{offset}]", f"eor\t{acc}, {acc}, x12"], 2)
        # per-CPU scratch words (kernel_blob/asm-offsets.inc PCPU_SCRATCH)
        offset = 8 * self.rng.randrange(4)
        return Block([
            "mrs\tx12, tpidr_el1",
            f"ldr\tx13, [x12, #PCPU_SCRATCH + {offset}]",
            f"add\tx13, x13, {state}",
            f"str\tx13, [x12, #PCPU_SCRATCH + {offset}]",
        ], 4)  # fmt: skip

    def skip(self, leaf: bool, label: str, inner: Block) -> Block:
        """``inner`` runs or not depending on one bit of the state."""
        state, _ = self._regs(leaf)
        bit = self.rng.randrange(1, 40)
        op = self.rng.choice(("tbz", "tbnz"))
        return Block([f"{op}\t{state}, #{bit}, {label}", *inner.lines, f"{label}:"],
                     1 + inner.executed / 2)  # fmt: skip

    def compare(self, leaf: bool, label: str, inner: Block) -> Block:
        """A compare-branch on loaded/derived data around ``inner``."""
        _, acc = self._regs(leaf)
        threshold = self.rng.randrange(1, 4095)
        return Block([f"and\tx14, {acc}, #0xfff", f"cmp\tx14, #{threshold}", f"b.lo\t{label}",
                      *inner.lines, f"{label}:"],
                     3 + inner.executed * (1 - threshold / 4096))  # fmt: skip


def _body(emitter: _Emitter, fn: Function, budget: int, local_labels: list[int]) -> None:
    """Fill ``fn.blocks`` with about ``budget`` instructions of work, calls interleaved."""
    rng = emitter.rng
    leaf = fn.leaf

    def label() -> str:
        local_labels[0] += 1
        return f".L{fn.name}_{local_labels[0]}"

    work: list[Block] = []
    remaining = budget
    while remaining > 0:
        kind = rng.random()
        if remaining < 5 or kind < 0.35:
            block = emitter.alu(leaf, min(remaining, rng.randrange(2, 7)))
        elif kind < 0.55:
            block = emitter.rodata(leaf)
        elif kind < 0.7:
            block = emitter.local(leaf)
        elif kind < 0.85 and remaining >= 6:
            block = emitter.skip(leaf, label(), emitter.alu(leaf, min(remaining - 1, rng.randrange(2, 9))))
        elif remaining >= 8:
            block = emitter.compare(leaf, label(), emitter.alu(leaf, min(remaining - 3, rng.randrange(2, 7))))
        else:
            block = emitter.alu(leaf, remaining)
        remaining -= len([ln for ln in block.lines if not ln.endswith(":")])
        work.append(block)
    state = "x19"
    calls: list[Block] = []
    for child in fn.children:
        calls.append(Block([f"add\tx0, {state}, #{rng.randrange(1, 4096)}", "mov\tx1, x21"
                            if emitter.user else f"eor\tx1, x20, {state}", f"bl\t{child}",
                            "add\tx20, x20, x0"], 4))  # fmt: skip
    for child in fn.optional:
        skip = label()
        calls.append(Block([f"tbnz\t{state}, #{rng.randrange(1, 40)}, {skip}",
                            f"add\tx0, {state}, #{rng.randrange(1, 4096)}",
                            "mov\tx1, x21" if emitter.user else "mov\tx1, x20",
                            f"bl\t{child}", "eor\tx20, x20, x0", f"{skip}:"], 3))  # fmt: skip
    # Calls at random points between the work blocks, in order.
    positions = sorted(rng.randrange(len(work) + 1) for _ in calls)
    blocks: list[Block] = []
    calls_iter = iter(calls)
    for index in range(len(work) + 1):
        while positions and positions[0] == index:
            positions.pop(0)
            blocks.append(next(calls_iter))
        if index < len(work):
            blocks.append(work[index])
    fn.blocks = blocks


def _render(fn: Function, user: bool) -> list[str]:
    frame = USER_FRAME if user else KERNEL_FRAME
    out = ["\t.balign\t4", f"\t.type\t{fn.name}, %function", f"{fn.name}:"]
    if not fn.leaf:
        out += [f"\tstp\tx29, x30, [sp, #-{frame}]!", "\tmov\tx29, sp",
                "\tstp\tx19, x20, [sp, #16]"]  # fmt: skip
        if user:
            out += ["\tstp\tx21, x22, [sp, #32]", "\tmov\tx21, x1"]
        out += ["\tmov\tx19, x0", f"\tstp\txzr, xzr, [sp, #{frame - 16}]",
                "\teor\tx20, x0, x0, lsr #17"]  # fmt: skip
    for index, block in enumerate(fn.blocks):
        out += [ln if ln.endswith(":") else "\t" + ln for ln in block.lines]
        if fn.has_loop and index == len(fn.blocks) // 2:
            out += _loop_lines(fn)
    if fn.has_loop and not fn.blocks:
        out += _loop_lines(fn)
    if not fn.leaf:
        out += ["\tmov\tx0, x20", "\tldp\tx19, x20, [sp, #16]"]
        if user:
            out.append("\tldp\tx21, x22, [sp, #32]")
        out.append(f"\tldp\tx29, x30, [sp], #{frame}")
    out.append("\tret")
    out += [ln if ln.endswith(":") else "\t" + ln for ln in fn.cold_lines]
    out += [f"\t.size\t{fn.name}, . - {fn.name}", ""]
    return out


def _loop_lines(fn: Function) -> list[str]:
    """A bounded loop: base trips + (state & 3), walking a table."""
    state, acc = ("x0", "x0") if fn.leaf else ("x19", "x20")
    top = f".L{fn.name}_loop"
    body = ["ldr\tx14, [x9, x15, lsl #3]", f"eor\t{acc}, {acc}, x14", f"add\tx14, x14, {acc}, lsr #3",
            f"madd\t{acc}, x14, x15, {acc}"]  # fmt: skip
    body = (body * (fn.loop_body // len(body) + 1))[: fn.loop_body]
    return [
        f"\tadrp\tx9, {fn.loop_table}",
        f"\tadd\tx9, x9, :lo12:{fn.loop_table}",
        f"\tand\tx15, {state}, #3",
        f"\tadd\tx15, x15, #{fn.loop_trips}",
        f"{top}:",
        *("\t" + ln for ln in body),
        "\tsubs\tx15, x15, #1",
        f"\tb.ne\t{top}",
    ]


@dataclass
class CallTree:
    root: str
    functions: list[Function]  # own functions, root first
    shared: list[str]  # shared leaves it calls


def _path(rng: random.Random, emitter: _Emitter, prefix: str, root: str, n_functions: int,
          own_insns: int, shared: list[Function], labels: list[int],
          quantiles: tuple[tuple[float, int], ...] = ()) -> CallTree:  # fmt: skip
    """One call tree of ``n_functions`` (``shared`` leaves among them), its own
    functions (not the shared ones) about ``own_insns`` instructions."""
    n_shared = min(len(shared), max(0, n_functions - 1))
    used = rng.sample(shared, n_shared) if n_shared else []
    n_own = n_functions - n_shared
    hot, cold = _sizes(rng, n_own, max(n_own * MIN_LEAF_INSNS, own_insns), MIN_LEAF_INSNS,
                       quantiles)  # fmt: skip
    functions = [Function(root if i == 0 else f"{prefix}_{i}", hot[i], leaf=True, cold=cold[i])
                 for i in range(n_own)]  # fmt: skip
    for index in range(1, n_own):
        parent = functions[rng.randrange(index)]  # a random recursive tree: depth ~ 2 ln n
        parent.children.append(functions[index].name)
        parent.leaf = False
    for leaf_fn in used:  # every shared leaf called at least once, more calls optional
        caller = functions[rng.randrange(n_own)]
        caller.children.append(leaf_fn.name)
        caller.leaf = False
    for fn in functions:
        if used and not fn.leaf and rng.random() < 0.3:
            fn.optional.append(rng.choice(used).name)
    functions[0].leaf = False  # the root keeps a frame: it is a syscall handler
    for fn in functions:
        _build(emitter, fn, labels)
    return CallTree(root, functions, [f.name for f in used])


def _build(emitter: _Emitter, fn: Function, labels: list[int]) -> None:
    """Fill in ``fn``'s body: its hot part, and a guard and cold code if it has any."""
    fn.frame_insns = 1 if fn.leaf else (13 if emitter.user else 10)
    if fn.cold:
        fn.frame_insns += 3
    overhead = fn.frame_insns + 4 * len(fn.children) + 5 * len(fn.optional)
    _body(emitter, fn, max(1, fn.size - overhead), labels)
    if fn.cold:
        state = "x0" if fn.leaf else "x19"
        # An error check that never fires (as the data never has a byte over 255):
        # the branch to the error path is there, the error path is never fetched.
        fn.blocks.insert(0, Block([f"and\tx14, {state}, #0xff", "cmp\tx14, #0x100",
                                   f"b.hs\t.L{fn.name}_cold", f".L{fn.name}_back:"], 3))  # fmt: skip
        fn.cold_lines = [f".L{fn.name}_cold:", *emitter.alu(fn.leaf, max(1, fn.cold - 1)).lines,
                         f"b\t.L{fn.name}_back"]  # fmt: skip


def _path_executed(path: CallTree, shared: list[Function]) -> float:
    """Expected instructions one call of ``path`` retires (its shared leaves included)."""
    helpers = {fn.name: fn.executed() for fn in shared}
    total = 0.0
    for fn in path.functions:
        total += fn.executed()
        total += sum(helpers.get(child, 0.0) for child in fn.children)
        total += sum(helpers.get(child, 0.0) / 2 for child in fn.optional)
    return total


def _fit_instructions(paths_fns: list[Function], target: float, table: str, rng: random.Random,
                      executed: float) -> None:  # fmt: skip
    """Give loops to some functions so that one call retires about ``target`` instructions."""
    deficit = target - executed
    if deficit <= 0:
        return
    loopers = [fn for fn in paths_fns if fn.size >= 12]
    if not loopers:
        loopers = paths_fns[:1]
    loopers = rng.sample(loopers, max(1, len(loopers) // 3))
    per = deficit / len(loopers)
    for fn in loopers:
        fn.has_loop = True
        fn.loop_table = table
        fn.loop_body = 4
        # 4 set-up + (trips + 1.5) * (body + 2) retired per call
        fn.loop_trips = max(1, min(60, round((per - 4) / (fn.loop_body + 2) - 1.5)))


def _table_lines(rng: random.Random, label: str, entries: int) -> list[str]:
    values = ", ".join(f"{rng.getrandbits(32):#x}" for _ in range(entries))
    return ["\t.balign\t8", f"\t.type\t{label}, %object", f"{label}:", f"\t.quad\t{values}",
            f"\t.size\t{label}, . - {label}"]  # fmt: skip


def _tables(rng: random.Random, prefix: str, count: int) -> list[tuple[str, int]]:
    return [(f"{prefix}_tbl{i}", 1 << rng.randrange(3, 7)) for i in range(count)]


# ---------------------------------------------------------------- kernel
def _kernel(fp: Footprint, rng: random.Random) -> tuple[list[str], list[str]]:
    """Kernel text lines and .rodata lines."""
    n_paths = fp.syscalls_per_iter
    shares = fp.shares()
    n_functions = max(1, fp.functions_per_path - ENTRY_FUNCTIONS)
    # One iteration's distinct text: the entry code, the shared leaves, each path's own functions.
    iter_insns = max(n_paths * MIN_LEAF_INSNS, fp.kernel_text_per_iter // 4 - ENTRY_INSNS)
    path_insns = iter_insns // n_paths
    tables = _tables(rng, "synth_k", 4 + 2 * n_paths)
    emitter = _Emitter(rng, user=False, tables=tables)
    labels = [0]
    # Leaf helpers shared by every path (think memcpy, spin_lock, rcu_read_lock):
    # one in five of a path's functions.
    n_shared = max(1, n_functions // 5) if n_functions > 2 else 0
    mean = max(MIN_LEAF_INSNS, path_insns // n_functions)
    hot, cold = _sizes(rng, n_shared, n_shared * mean, MIN_LEAF_INSNS, fp.function_sizes)
    shared = [Function(f"synth_helper_{i}", h, leaf=True, cold=c)
              for i, (h, c) in enumerate(zip(hot, cold, strict=True))]
    for fn in shared:
        _build(emitter, fn, labels)
    functions = list(shared)
    own_total = iter_insns - sum(fn.size for fn in shared)
    for index, share in enumerate(shares):
        target = fp.instructions_per_path * n_paths * share - ENTRY_INSNS
        path = _path(rng, emitter, f"synth_p{index}", f"sys_synth_{index}",
                     fp.path_functions(index) - ENTRY_FUNCTIONS, round(own_total * share), shared,
                     labels, fp.function_sizes)  # fmt: skip
        _fit_instructions(path.functions, target, tables[0][0], rng, _path_executed(path, shared))
        functions += path.functions
    rng.shuffle(functions)  # a path's functions lie all over the text, as in a real kernel
    text = ["\t.section\t.text.synth, \"ax\""]
    for fn in functions:
        if fn.name.startswith("sys_synth_"):
            text.append(f"\t.globl\t{fn.name}")
        text += _render(fn, user=False)
    rodata = ["\t.section\t.rodata.synth, \"a\""]
    for label, entries in tables:
        rodata += _table_lines(rng, label, max(entries, 64))
    return text, rodata


# ---------------------------------------------------------------- user (dbsim)
def _user(fp: Footprint, rng: random.Random) -> list[str]:
    """dbsim's EL0 operators: per plan and stage a call tree of operator functions."""
    stages = fp.syscalls_per_iter
    per_stage = max(16, fp.user_code // (4 * fp.plans * stages))  # with its shared leaves
    mean = max(8, fp.user_function_bytes // 4)
    tables = _tables(rng, "synth_u", 8)
    emitter = _Emitter(rng, user=True, tables=tables)
    emitter.rows_bytes = fp.rows_per_query * ROW_BYTES
    labels = [0]
    n_functions = max(1, round(per_stage / mean))
    n_shared = max(1, n_functions // 5) if n_functions > 2 else 0
    hot, _ = _sizes(rng, n_shared, n_shared * mean, MIN_LEAF_INSNS)
    shared = [Function(f"uop_helper_{i}", h, leaf=True) for i, h in enumerate(hot)]
    for fn in shared:
        _build(emitter, fn, labels)
    functions = list(shared)
    # user_code is the union: every stage's own operators plus the shared leaves once.
    own_insns = max(16, (fp.user_code // 4 - sum(fn.size for fn in shared)) // (fp.plans * stages))
    for plan in range(fp.plans):
        for stage in range(stages):
            path = _path(rng, emitter, f"uop_{plan}_{stage}", f"uop_{plan}_{stage}", n_functions,
                         own_insns, shared, labels)  # fmt: skip
            functions += path.functions
    rng.shuffle(functions)
    text = ["\t.section\t.user.text, \"ax\""]
    for fn in functions:
        text += _render(fn, user=True)
    # A jump table per stage (a compiled switch): entry p branches to plan p's root.
    for stage in range(stages):
        text += ["\t.balign\t4", f"uop_stage_{stage}:"]
        text += [f"\tb\tuop_{plan}_{stage}" for plan in range(fp.plans)]
    text += ["\t.section\t.user.data, \"aw\""]
    for label, entries in tables:
        text += _table_lines(rng, label, max(entries, 64))
    return text


def _workload(fp: Footprint) -> list[str]:
    """workload_dbsim: set-up (rows and index, split between the tasks), then queries."""
    rows, log2 = fp.rows, fp.buckets_log2
    stages = fp.syscalls_per_iter
    lines = f"""
	.section .user.bss, "aw", %nobits
	.balign	4096
dbs_rows:
	.zero	{rows * ROW_BYTES}
dbs_next:
	.zero	{8 * rows}
dbs_buckets:
	.zero	{8 << log2}
	.balign	64
dbs_arrived:
	.zero	64

	.section .user.text, "ax"
// dbsim: x0 task, x1 queries (0: until stopped), x2 tasks, x3 warm-up queries.
	.globl	workload_dbsim
	.type	workload_dbsim, %function
workload_dbsim:
	mov	x19, x1
	mov	x26, x0
	mov	x28, x2
	mov	x27, x3
	bl	dbs_setup			// x0-x15 only
	window_start_unless_warmup	x27
	ldr	x9, =0x9e3779b9
	madd	x20, x26, x9, x9		// per-task LCG state
	ldr	x21, =LCG_MULT_VALUE
	ldr	x22, =LCG_INC_VALUE
	mov	x24, #0				// checksum
	mov	x25, #0				// queries run (picks the plan)
1:	madd	x20, x20, x21, x22
	lsr	x23, x20, #33
	ldr	x9, ={rows - fp.rows_per_query}
	udiv	x10, x23, x9
	msub	x23, x10, x9, x23		// first row of the query
	ldr	x9, ={KEY_MULT}
	mul	x0, x23, x9
	and	x0, x0, #0xffffffff		// its key
	bl	dbs_lookup
	cmp	x0, x23
	b.ne	9f
	adrp	x9, dbs_rows
	add	x9, x9, :lo12:dbs_rows
	mov	x10, #{ROW_BYTES}
	madd	x22, x23, x10, x9		// the rows (x22 is free while the plan runs)
	mov	x9, x22				// the range scan: every line of its rows
	mov	x10, #{fp.rows_per_query * ROW_BYTES // 64}
	mov	x11, #0
5:	ldr	x12, [x9], #64
	add	x11, x11, x12
	subs	x10, x10, #1
	b.ne	5b
	eor	x24, x24, x11
	mov	x9, #{fp.plans}
	udiv	x10, x25, x9
	msub	x28, x10, x9, x25		// plan = queries % plans (x28 is free after set-up)
"""
    for stage in range(stages):
        lines += f"""	adr	x9, uop_stage_{stage}
	add	x9, x9, x28, lsl #2
	eor	x0, x20, x24
	mov	x1, x22
	blr	x9				// the operators of stage {stage}
	add	x24, x24, x0
	ldr	x0, [x22]			// the row's key
	eor	x0, x0, x24, lsl #7
	mov	x8, #(__NR_synth_base + {stage})
	svc	#0
	eor	x24, x24, x0
"""
    lines += f"""	ldr	x22, =LCG_INC_VALUE
	add	x25, x25, #1
	next_iteration_or_exit
9:	mov	x0, #1				// the index lost a row
	mov	x8, #__NR_exit
	svc	#0
	.size	workload_dbsim, . - workload_dbsim

// dbs_lookup(key): the row holding key, or -1; a chained hash probe
	.type	dbs_lookup, %function
dbs_lookup:
	ldr	x9, ={HASH_MULT:#x}
	mul	x9, x0, x9
	lsr	x9, x9, #{64 - log2}
	adrp	x10, dbs_buckets
	add	x10, x10, :lo12:dbs_buckets
	ldr	x11, [x10, x9, lsl #3]
	adrp	x12, dbs_rows
	add	x12, x12, :lo12:dbs_rows
	adrp	x13, dbs_next
	add	x13, x13, :lo12:dbs_next
1:	cbz	x11, 2f
	sub	x14, x11, #1
	lsl	x15, x14, #{ROW_BYTES.bit_length() - 1}
	ldr	x15, [x12, x15]
	cmp	x15, x0
	b.eq	3f
	ldr	x11, [x13, x14, lsl #3]
	b	1b
2:	mov	x0, #-1
	ret
3:	mov	x0, x14
	ret
	.size	dbs_lookup, . - dbs_lookup

// dbs_setup(x26 task, x28 tasks): fill this task's share of the rows and
// push each of them on its bucket's chain (a compare-and-swap loop: the
// tasks insert in parallel), then wait for every task.
	.type	dbs_setup, %function
dbs_setup:
	ldr	x0, ={rows}
	udiv	x1, x0, x28
	mul	x3, x1, x26			// first row: task * (rows / tasks)
	add	x4, x3, x1			// end
	sub	x5, x28, #1
	cmp	x26, x5
	csel	x4, x0, x4, eq			// the last task takes the remainder
	mov	x16, x3
	adrp	x6, dbs_rows
	add	x6, x6, :lo12:dbs_rows
	ldr	x7, ={KEY_MULT}
	ldr	x8, =0x0101010101010101
1:	cmp	x3, x4
	b.hs	3f
	mul	x9, x3, x7
	and	x9, x9, #0xffffffff		// key
	lsl	x10, x3, #{ROW_BYTES.bit_length() - 1}
	add	x10, x6, x10
	eor	x12, x9, x8
	stp	x9, x12, [x10], #16		// word 0 the key, then payload
	mov	x11, #{(ROW_BYTES - 16) // 80}
2:	add	x12, x12, x8			// 80 bytes a turn, as a memset-like loop stores
	add	x13, x12, x8
	stp	x12, x13, [x10]
	stp	x13, x12, [x10, #16]
	stp	x12, x13, [x10, #32]
	stp	x13, x12, [x10, #48]
	stp	x12, x13, [x10, #64]
	add	x10, x10, #80
	subs	x11, x11, #1
	b.ne	2b
	add	x3, x3, #1
	tst	x3, #1023			// every 1024 rows a syscall, as a real loader's
	b.ne	1b				// writes would make (and the watchdog wants)
	mov	x8, #__NR_getcpu
	svc	#0
	ldr	x0, ={rows}
	ldr	x8, =0x0101010101010101
	b	1b
3:	adrp	x10, dbs_buckets
	add	x10, x10, :lo12:dbs_buckets
	adrp	x11, dbs_next
	add	x11, x11, :lo12:dbs_next
	ldr	x12, ={HASH_MULT:#x}
	mov	x3, x16
4:	cmp	x3, x4
	b.hs	6f
	mul	x9, x3, x7
	and	x9, x9, #0xffffffff
	mul	x13, x9, x12
	lsr	x13, x13, #{64 - log2}		// bucket
	add	x14, x10, x13, lsl #3
	add	x17, x3, #1
5:	ldr	x15, [x14]			// push row x3 on the chain
	str	x15, [x11, x3, lsl #3]
	ldaxr	x5, [x14]
	cmp	x5, x15
	b.ne	5b
	stlxr	w5, x17, [x14]
	cbnz	w5, 5b
	add	x3, x3, #1
	b	4b
6:	adrp	x9, dbs_arrived
	add	x9, x9, :lo12:dbs_arrived
7:	ldaxr	x10, [x9]
	add	x10, x10, #1
	stlxr	w11, x10, [x9]
	cbnz	w11, 7b
9:	ldar	x10, [x9]
	cmp	x10, x28
	b.hs	8f
	mov	x8, #__NR_getcpu		// yield-like: the others are still filling
	svc	#0
	b	9b
8:	ret
	.size	dbs_setup, . - dbs_setup
"""
    lines = lines.replace("LCG_MULT_VALUE", str(LCG_MULT)).replace("LCG_INC_VALUE", str(LCG_INC))
    return lines.splitlines()


def generate(fp: Footprint) -> str:
    """The assembly text for ``fp``: kernel paths, their rodata, and dbsim."""
    rng = random.Random(fp.seed)
    kernel_text, rodata = _kernel(fp, random.Random(rng.getrandbits(64)))
    user = _user(fp, random.Random(rng.getrandbits(64)))
    head = [
        "// Generated by emu/blob/synth.py: do not edit.",
        f"// {fp.cache_token()}",
        "\t.include \"asm-offsets.inc\"",
        "\t.include \"task.inc\"",
        "",
    ]
    return "\n".join(head + kernel_text + rodata + user + _workload(fp)) + "\n"


def write_source(fp: Footprint, directory: Path) -> Path:
    """Write ``generate(fp)`` as ``directory/synth.S``."""
    path = Path(directory) / "synth.S"
    atomic_write_text(path, generate(fp))
    return path

