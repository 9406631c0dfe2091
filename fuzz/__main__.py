"""``python -m fuzz``: run fuzz targets for a time budget under a supervisor.

The supervisor starts a child process per target; the child fuzzes and
keeps the input it is working on in a shared file, so a case that kills the
child (a crash) or stops it making progress (a hang the in-process time box
could not interrupt) is recorded with its input, and a fresh child goes on
with the rest of the budget. At the end a table gives, per target, the
cases tried, the clean results, the documented rejections and every failure
kind; each distinct failure's input is saved under --findings. The exit
status is 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import mmap
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emu.fileio import atomic_write_bytes, atomic_write_text
from fuzz.harness import FAILURE_KINDS, Failure, Stats, fuzz_loop, input_digest, run_case
from fuzz.targets import HIDDEN_TARGETS, TARGET_NAMES, get_target

STATE_CAPACITY = 4 << 20
"""Bytes of the current input the child shares (longer inputs are cut in the record)."""
_HEADER = 16  # u64 case counter, u64 input length


class _SharedInput:
    """The child's current case, visible to the supervisor after the child dies."""

    def __init__(self, path: Path, create: bool) -> None:
        if create:
            path.write_bytes(bytes(_HEADER + STATE_CAPACITY))
        self._file = open(path, "r+b")  # noqa: SIM115 - lives as long as the mapping
        self.map = mmap.mmap(self._file.fileno(), _HEADER + STATE_CAPACITY)

    def record(self, data: bytes) -> None:
        count = int.from_bytes(self.map[0:8], "little") + 1
        cut = data[:STATE_CAPACITY]
        self.map[8:16] = len(cut).to_bytes(8, "little")
        self.map[_HEADER : _HEADER + len(cut)] = cut
        self.map[0:8] = count.to_bytes(8, "little")

    @property
    def count(self) -> int:
        return int.from_bytes(self.map[0:8], "little")

    @property
    def current(self) -> bytes:
        size = int.from_bytes(self.map[8:16], "little")
        return bytes(self.map[_HEADER : _HEADER + size])


# ----------------------------------------------------------------------------- child


def _child(args: argparse.Namespace) -> int:
    if args.memory_mib:
        limit = args.memory_mib << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    target = get_target(args.target)
    shared = _SharedInput(Path(args.state), create=False)
    result = Path(args.result)
    if args.engine == "atheris":
        return _child_atheris(target, shared, result, args)
    def checkpoint(stats: Stats) -> None:
        atomic_write_text(result, json.dumps(stats.to_json()))

    fuzz_loop(target, args.seconds, args.max_cases, args.seed, shared.record, checkpoint)
    return 0


ATHERIS_SLOWDOWN = 5
"""Coverage instrumentation makes every case this many times slower (about)."""
ATHERIS_STARTUP = 120.0
"""Seconds atheris may take to instrument every loaded function before the first case."""


def _child_atheris(target, shared: _SharedInput, result: Path, args) -> int:  # type: ignore[no-untyped-def]
    import atheris  # optional: pip install atheris

    target = dataclasses.replace(target, timeout=target.timeout * ATHERIS_SLOWDOWN)
    stats = Stats(target.name)
    start = time.monotonic()
    last_save = [start]

    def one_input(data: bytes) -> None:
        shared.record(data)
        stats.add(run_case(target, data), data)
        now = time.monotonic()
        if now - last_save[0] > 2 or stats.cases == args.max_cases:
            stats.seconds = now - start
            atomic_write_text(result, json.dumps(stats.to_json()))
            last_save[0] = now
        if args.max_cases and stats.cases >= args.max_cases:
            os._exit(0)

    corpus = Path(tempfile.mkdtemp(prefix=f"ktext-fuzz-{target.name}-corpus-"))
    atexit.register(shutil.rmtree, corpus, ignore_errors=True)
    for seed_input in target.seeds():
        (corpus / input_digest(seed_input)).write_bytes(seed_input)
    atheris.instrument_all()
    atheris.Setup([sys.argv[0], f"-max_total_time={int(args.seconds)}", f"-seed={args.seed + 1}",
                   "-rss_limit_mb=0", "-timeout=0", f"-artifact_prefix={corpus}/",
                   str(corpus)], one_input)  # fmt: skip
    atheris.Fuzz()
    return 0


# ------------------------------------------------------------------------ supervisor


def supervise(name: str, seconds: float, args: argparse.Namespace) -> Stats:
    target = get_target(name)
    total = Stats(name)
    work = Path(tempfile.mkdtemp(prefix=f"ktext-fuzz-{name}-"))
    deadline = time.monotonic() + seconds
    round_seed = args.seed
    hang_limit = target.timeout * 2 + target.startup
    if args.engine == "atheris":
        hang_limit = target.timeout * 2 * ATHERIS_SLOWDOWN + target.startup + ATHERIS_STARTUP
    while True:
        left = deadline - time.monotonic()
        cases_left = None if args.max_cases is None else args.max_cases - total.cases
        if left < 1 or (cases_left is not None and cases_left <= 0):
            break
        state, result = work / "state", work / "result.json"
        result.unlink(missing_ok=True)
        shared = _SharedInput(state, create=True)
        command = [sys.executable, "-m", "fuzz", "--child", "--target", name,
                   "--seconds", f"{left:.1f}", "--seed", str(round_seed), "--state", str(state),
                   "--result", str(result), "--engine", args.engine,
                   "--memory-mib", str(args.memory_mib)]  # fmt: skip
        if cases_left is not None:
            command += ["--max-cases", str(cases_left)]
        child = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[1])
        seen, progress_at, hung = shared.count, time.monotonic(), False
        while child.poll() is None:
            time.sleep(0.25)
            now = time.monotonic()
            if shared.count != seen:
                seen, progress_at = shared.count, now
            elif now - progress_at > hang_limit:
                child.kill()
                child.wait()
                hung = True
        done = Stats.from_json(json.loads(result.read_text())) if result.exists() else None
        if done is not None:
            total.merge(done)
        if hung or child.returncode != 0:
            code = child.returncode
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            kind = "hang" if hung else "crash"
            label = f"{kind}: no progress for {hang_limit:g} s" if hung else f"crash: child {how}"
            known = total.failures.get(label)
            if known is None:
                total.failures[label] = Failure(kind, label, label, shared.current)
            else:
                known.count += 1
            # Cases after the last checkpoint lost their verdicts with the child.
            lost = max(0, shared.count - 1 - (done.cases if done else 0))
            total.kinds["lost"] += lost
            total.kinds[kind] += 1
            total.cases += lost + 1
        elif done is not None:
            break  # the child used its whole budget
        round_seed += 7919
    total.seconds = seconds - max(0.0, deadline - time.monotonic())
    shutil.rmtree(work, ignore_errors=True)
    return total


def save_findings(stats: Stats, root: Path) -> list[Path]:
    saved = []
    for failure in stats.failures.values():
        path = root / stats.target / f"{failure.kind}-{input_digest(failure.example)}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, failure.example)
        atomic_write_text(path.with_suffix(".txt"), f"{failure.signature}\n\n{failure.detail}\n")
        saved.append(path)
    return saved


def table(all_stats: list[Stats]) -> str:
    head = ("target", "cases", "seconds", "ok", "rejected", *FAILURE_KINDS, "lost",
            "distinct failures")
    rows = [head]
    for s in all_stats:
        rows.append((s.target, str(s.cases), f"{s.seconds:.0f}", str(s.kinds["ok"]),
                     str(s.kinds["rejected"]), *(str(s.kinds[k]) for k in FAILURE_KINDS),
                     str(s.kinds["lost"]),
                     str(len(s.failures))))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def replay(name: str, path: Path) -> int:
    target = get_target(name)
    verdict = run_case(target, path.read_bytes())
    print(f"{verdict.kind}: {verdict.label}")
    if verdict.detail:
        print(verdict.detail)
    return 1 if verdict.failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="all", help=f"one of {', '.join(TARGET_NAMES)}, all")
    parser.add_argument("--seconds", type=float, default=60.0, help="budget per target")
    parser.add_argument("--max-cases", type=int, help="stop a target after this many cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", choices=("hypothesis", "atheris"), default="hypothesis",
                        help="input generator (atheris: coverage-guided, if installed)")
    parser.add_argument("--findings", type=Path,
                        default=Path(tempfile.gettempdir()) / "ktext-emu-fuzz",
                        help="where failing inputs are saved")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the statistics as JSON here")
    parser.add_argument("--memory-mib", type=int, default=4096,
                        help="address-space limit of the fuzzing child (0: none)")
    parser.add_argument("--replay", type=Path, metavar="FILE", help="run one saved input")
    parser.add_argument("--list", action="store_true", help="list the targets")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    if args.list:
        for name in TARGET_NAMES:
            print(f"{name:<10} {get_target(name).summary}")
        return 0
    names = TARGET_NAMES if args.target == "all" else (args.target,)
    for name in names:
        if name not in TARGET_NAMES + HIDDEN_TARGETS:
            parser.error(f"unknown target {name!r} (targets: {', '.join(TARGET_NAMES)})")
    if args.replay:
        if len(names) != 1:
            parser.error("--replay needs one --target")
        return replay(names[0], args.replay)
    all_stats = []
    for name in names:
        stats = supervise(name, args.seconds, args)
        all_stats.append(stats)
        for path in save_findings(stats, args.findings):
            print(f"{name}: failure input saved as {path}", file=sys.stderr)
    print(table(all_stats))
    if args.json:
        atomic_write_text(args.json, json.dumps([s.to_json() for s in all_stats], indent=1))
    return 1 if any(s.failures for s in all_stats) else 0


if __name__ == "__main__":
    sys.exit(main())
