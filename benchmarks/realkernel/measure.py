"""Measures a real arm64 kernel's syscall footprint under QEMU, end to end.

    python3 -m benchmarks.realkernel.measure --workdir DIR --out FILE.json
        [--iters 100] [--warmup 20] [--smp 2] [--cpu cortex-a72]
        [--keep-log PATH] [--excerpt-dir DIR]

Steps (each bounded by a timeout):
1. Debian's arm64 kernel, if DIR does not hold it yet: `apt-get download`
   of linux-image-ABI-arm64:arm64 (the Image) and linux-image-ABI-arm64-dbg
   :arm64 (vmlinux with symbols and the real System.map: the image package's
   System.map is a one-line stub), unpacked with `dpkg-deb` into DIR/image and
   DIR/dbg.  Nothing is installed.
2. ktm_init.c built with aarch64-linux-gnu-gcc into a static, libc-free /init,
   packed into a newc initramfs (initramfs.py).
3. qemu-system-aarch64 -M virt -icount shift=0 boots it; QEMU's exec log
   records only the measured loops (guest.py).  With --excerpt-dir, a second
   short capture (the init's stream mode) gives the excerpt the tests use.
4. analyse.py turns the log into the figures written to FILE (the schema of
   emu/data/footprint/debian-6.1-arm64.json).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from benchmarks.realkernel import analyse, guest
from benchmarks.realkernel.initramfs import init_archive
from emu.fileio import atomic_write_text

HERE = Path(__file__).resolve().parent
INIT_SOURCE = HERE / "ktm_init.c"
CROSS_GCC = "aarch64-linux-gnu-gcc"
CROSS_NM = "aarch64-linux-gnu-nm"
CFLAGS = ["-static", "-nostdlib", "-ffreestanding", "-fno-stack-protector", "-fno-ipa-icf",
          "-O2", "-Wall"]

# The kernel measured for emu/data/footprint/debian-6.1-arm64.json (bookworm-security).
DEFAULT_ABI = "6.1.0-57"
DEFAULT_VERSION = "6.1.192-3"

# The syscall wrappers of ktm_init.c, in the order its loops run them.
MEASURED = ["getppid", "read_devzero", "write_devnull", "openat", "close", "fstat",
            "newfstatat", "pipe_write", "pipe_read", "mmap", "munmap", "clock_gettime",
            "sched_yield", "futex_wake"]
WHAT_IS_MEASURED = {
    "getppid": "getppid()",
    "read_devzero": "read(fd of /dev/zero, buf, 64)",
    "write_devnull": "write(fd of /dev/null, buf, 64)",
    "openat": "openat(AT_FDCWD, \"/dev/null\", O_RDONLY|O_CLOEXEC)",
    "close": "close() of that fd",
    "fstat": "fstat(fd of /dev/null)",
    "newfstatat": "newfstatat(AT_FDCWD, \"/init\", buf, 0)",
    "pipe_write": "write(pipe, buf, 64) (nobody waiting)",
    "pipe_read": "read(pipe, buf, 64) (64 bytes ready)",
    "mmap": "mmap(NULL, 4096, RW, MAP_PRIVATE|MAP_ANONYMOUS) (never touched)",
    "munmap": "munmap() of that page",
    "clock_gettime": "clock_gettime(CLOCK_MONOTONIC) through svc (no vDSO)",
    "sched_yield": "sched_yield() (nothing else runnable on the CPU)",
    "futex_wake": "futex(FUTEX_WAKE_PRIVATE, 1) with no waiter",
}


# Stream mode loops this often; the host quits QEMU long before it is done.
STREAM_ITERS = 10_000_000


class MeasureError(RuntimeError):
    """A step of the measurement failed; the message names it."""


def _run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, check=True, timeout=timeout, capture_output=True, **kw)
    except FileNotFoundError:
        raise MeasureError(f"{cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise MeasureError(f"{shlex.join(cmd)} did not finish within {timeout:.0f} s") from None
    except subprocess.CalledProcessError as e:
        raise MeasureError(f"{shlex.join(cmd)} failed: {e.stderr.decode(errors='replace')[-400:]}") from None


def kernel_files(workdir: Path, abi: str, version: str) -> dict[str, Path]:
    """Paths of the Image, vmlinux and System.map, downloading them if absent."""
    files = {
        "image": workdir / "image" / "boot" / f"vmlinuz-{abi}-arm64",
        "vmlinux": workdir / "dbg" / "usr" / "lib" / "debug" / "boot" / f"vmlinux-{abi}-arm64",
        "system_map": workdir / "dbg" / "usr" / "lib" / "debug" / "boot" / f"System.map-{abi}-arm64",
    }
    debs = {"image": f"linux-image-{abi}-arm64", "dbg": f"linux-image-{abi}-arm64-dbg"}
    for key, package in debs.items():
        deb = workdir / f"{package}_{version}_arm64.deb"
        wanted = [files["image"]] if key == "image" else [files["vmlinux"], files["system_map"]]
        if all(p.exists() for p in wanted):
            continue
        if not deb.exists():
            _run(["apt-get", "download", f"{package}:arm64={version}"], timeout=1800, cwd=workdir)
        if key == "image":
            _run(["dpkg-deb", "-x", str(deb), str(workdir / "image")], timeout=600)
        else:  # only the boot directory: the modules' debug files are ~4 GB
            (workdir / "dbg").mkdir(exist_ok=True)
            tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
            _run(["tar", "-x", "-C", str(workdir / "dbg"), "./usr/lib/debug/boot/"],
                 timeout=1800, stdin=tar.stdout)
            tar.wait(timeout=60)
    for path in files.values():
        if not path.exists():
            raise MeasureError(f"{path} is missing after unpacking the Debian packages")
    return files


def package_provenance(workdir: Path, abi: str, version: str) -> list[dict]:
    """Name, version and sha256 of each .deb used (what `dpkg-deb -f` says)."""
    out = []
    for package in (f"linux-image-{abi}-arm64", f"linux-image-{abi}-arm64-dbg"):
        deb = workdir / f"{package}_{version}_arm64.deb"
        entry = {"package": package, "architecture": "arm64", "version": version,
                 "source": "Debian bookworm (apt-get download, dpkg-deb -x; not installed)"}
        if deb.exists():
            fields = _run(["dpkg-deb", "-f", str(deb), "Package", "Version"], timeout=60)
            for line in fields.stdout.decode().splitlines():
                k, _, v = line.partition(": ")
                entry[k.lower()] = v
            entry["sha256"] = _sha256(deb)
        out.append(entry)
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_init(outdir: Path) -> tuple[Path, Path]:
    """ktm_init.c -> static /init, and its `nm -S` listing."""
    outdir.mkdir(parents=True, exist_ok=True)
    init = outdir / "init"
    _run([CROSS_GCC, *CFLAGS, "-o", str(init), str(INIT_SOURCE)], timeout=120)
    nm = outdir / "init.nm"
    nm.write_text(_run([CROSS_NM, "-S", str(init)], timeout=60).stdout.decode())
    return init, nm


def user_symbols(nm_text: str) -> analyse.SymbolTable:
    """The init's symbols from its `nm -S` listing."""
    pairs = []
    for line in nm_text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[-2] in "tT":
            pairs.append((int(parts[0], 16), parts[-1]))
    return analyse.SymbolTable.from_pairs(pairs)


def analyse_log(log_lines, system_map_lines, nm_sizes: dict | None, init_nm: str) -> dict:
    """The figures of one log: everything of the JSON except provenance."""
    kernel_syms, every = analyse.parse_system_map(system_map_lines)
    table = analyse.TranslationTable()
    unknown: Counter = Counter()
    records = Counter()

    def counted(blocks):
        for b in blocks:
            records[b.cpu] += 1
            yield b

    excs = analyse.excursions(counted(analyse.parse_log(log_lines, table, unknown)), table,
                              user_symbols(init_nm), every["vectors"])
    fp = analyse.accumulate(excs, table, kernel_syms)
    syscalls = analyse.syscall_figures(fp, MEASURED, kernel_syms)
    for name, fig in syscalls.items():
        fig["what"] = WHAT_IS_MEASURED[name]
        fig["calls_by_cpu"] = {str(cpu): n for (kind, cpu), n in sorted(fp.calls_by_cpu.items())
                               if kind == name}
    measured_union = set().union(*(fp.addrs[k] for k in MEASURED if k in fp.addrs))
    steady_union = set().union(*(fp.uninterrupted_addrs[k] for k in MEASURED
                                 if k in fp.uninterrupted_addrs))
    others = analyse.syscall_figures(fp, sorted(set(fp.calls) - set(MEASURED)), kernel_syms)
    out = {
        "syscalls": syscalls,
        "union_text_bytes": len(measured_union) * analyse.INSN_BYTES,
        "union_lines": len({a // analyse.LINE_BYTES for a in measured_union}),
        "union_functions": len({kernel_syms.index(a) for a in measured_union}),
        # Calls that took no interrupt or fault inside the kernel: the syscall
        # paths themselves, without the timer tick, softirqs and RCU they host.
        "uninterrupted_union_text_bytes": len(steady_union) * analyse.INSN_BYTES,
        "uninterrupted_union_lines": len({a // analyse.LINE_BYTES for a in steady_union}),
        "text_share": analyse.text_share(measured_union, every),
        "other_excursions": {k: {f: v[f] for f in ("calls", "instructions_per_call",
                                                   "text_bytes_per_call", "union_text_bytes")}
                             for k, v in others.items()},
        "log": {"records_by_cpu": {str(c): n for c, n in sorted(records.items())},
                "records_without_translation": sum(unknown.values())},
    }
    if nm_sizes is not None:
        out["function_sizes"] = analyse.function_size_figures(nm_sizes, every, measured_union,
                                                              kernel_syms)
    return out


def write_excerpt(log: Path, system_map: Path, init_nm: Path, outdir: Path,
                  max_bytes: int) -> dict:
    """The log's first lines (< max_bytes, ending before a Trace or an IN:
    block) and the System.map lines of every function they run (and of the
    symbol after each, where it ends), plus the section markers analysis needs.

    The log is a stream-mode capture (record_stream): switched on mid-loop, so
    every block is translated again, and listed, before it first runs."""
    outdir.mkdir(parents=True, exist_ok=True)
    kept, size = [], 0
    with open(log) as f:
        for line in f:
            if size + len(line) > max_bytes and line.startswith(("Trace", "----")):
                break
            kept.append(line)
            size += len(line)
    excerpt = outdir / "qemu-exec-debian-6.1.txt"
    atomic_write_text(excerpt, "".join(kept))
    map_lines = system_map.read_text().splitlines(keepends=True)
    kernel_syms, _ = analyse.parse_system_map(map_lines)
    table = analyse.TranslationTable()
    list(analyse.parse_log(kept, table))
    needed = set()
    for pc, n in table.insns.items():
        if pc >= analyse.KERNEL_VA_MIN:
            for a in range(pc, pc + 4 * n, 4):
                i = kernel_syms.index(a)
                needed.add(kernel_syms.starts[i])
                if i + 1 < len(kernel_syms.starts):  # where the function ends
                    needed.add(kernel_syms.starts[i + 1])
    markers = {"_text", "_stext", "vectors", "_etext", "_sinittext", "_einittext",
               "__init_begin", "_end"}
    picked = [ln for ln in map_lines
              if ln.split()[2] in markers or (ln.split()[1] in "tTwW" and int(ln.split()[0], 16) in needed)]
    atomic_write_text(outdir / "System.map-excerpt", "".join(picked))
    shutil.copyfile(init_nm, outdir / "ktm-init.nm")
    return {"excerpt_bytes": size, "excerpt_lines": len(kept),
            "excerpt_trace_records": sum(1 for ln in kept if ln.startswith("Trace")),
            "system_map_lines": len(picked)}


def _icount_shift(args: argparse.Namespace) -> int | None:
    return None if args.icount == "off" else int(args.icount)


def capture_excerpt(args: argparse.Namespace, files: dict[str, Path], initrd: Path,
                    init_nm: Path, ktm: Path) -> dict:
    """A second, short capture in stream mode, and the excerpt cut from it."""
    monitor = ktm / "monitor-stream.sock"
    # -icount as in the measured run: multi-threaded TCG on host time would
    # fill the excerpt with timer ticks (the log slows the guest ~100x, not
    # its clock); the init's YIELD after each call alternates the two vCPUs.
    command = guest.qemu_command(args.qemu, files["image"], initrd, monitor, cpu=args.cpu,
                                 smp=args.smp, iters=STREAM_ITERS, warmup=args.warmup,
                                 stream=True, icount_shift=_icount_shift(args))
    log = ktm / "stream.log"
    guest.record_stream(command, monitor, log, log_bytes=2 * args.excerpt_bytes,
                        settle_seconds=1.0, boot_timeout=args.boot_timeout,
                        run_timeout=args.run_timeout)
    info = write_excerpt(log, files["system_map"], init_nm, args.excerpt_dir,
                         args.excerpt_bytes)
    return {"qemu_command": shlex.join(command), "qemu_log_flags": guest.LOG_FLAGS,
            "what": "the first lines of a stream-mode capture: both CPUs loop over "
                    "getppid; the log is switched on mid-loop",
            **info}


def print_table(figures: dict) -> None:
    print(f"{'syscall':<15}{'calls':>6}{'insns/call':>12}{'median':>8}{'bytes/call':>12}"
          f"{'lines':>7}{'funcs':>7}{'union B':>9}")
    for name, f in figures["syscalls"].items():
        print(f"{name:<15}{f['calls']:>6}{f['instructions_per_call']:>12.1f}"
              f"{f['instructions_per_call_median']:>8}{f['text_bytes_per_call']:>12}"
              f"{f['lines_per_call']:>7}{f['functions_per_call']:>7}{f['union_text_bytes']:>9}")
    print(f"union of kernel text over the set: {figures['union_text_bytes']} B, "
          f"{figures['union_lines']} lines, {figures['union_functions']} functions; "
          f"uninterrupted calls only: {figures['uninterrupted_union_text_bytes']} B")
    if "function_sizes" in figures:
        for k in ("all", "executed"):
            d = figures["function_sizes"][k]
            print(f"function sizes ({k}): n={d['count']} mean={d['mean']} p10={d['p10']} "
                  f"p50={d['p50']} p90={d['p90']} p99={d['p99']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m benchmarks.realkernel.measure",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, required=True,
                    help="downloads, unpacked packages, the init and the log go here")
    ap.add_argument("--out", type=Path, required=True, help="the JSON figures")
    ap.add_argument("--abi", default=DEFAULT_ABI)
    ap.add_argument("--version", default=DEFAULT_VERSION)
    ap.add_argument("--iters", type=int, default=100, help="recorded iterations of each loop")
    ap.add_argument("--warmup", type=int, default=20, help="unrecorded iterations first")
    ap.add_argument("--smp", type=int, choices=(1, 2), default=2)
    ap.add_argument("--cpu", default="cortex-a72", help="QEMU -cpu model")
    ap.add_argument("--icount", default="0",
                    help="QEMU -icount shift for the measured run (2**shift ns per "
                         "instruction: 0 = 1 GHz at one instruction per cycle), or 'off' "
                         "for multi-threaded TCG on host time")
    ap.add_argument("--qemu", default="qemu-system-aarch64")
    ap.add_argument("--boot-timeout", type=float, default=600)
    ap.add_argument("--run-timeout", type=float, default=3600)
    ap.add_argument("--keep-log", type=Path, help="copy the full exec log here")
    ap.add_argument("--excerpt-dir", type=Path,
                    help="write a small excerpt of the log and System.map here (for tests)")
    ap.add_argument("--excerpt-bytes", type=int, default=290_000)
    ap.add_argument("--analyse-only", action="store_true",
                    help="reuse WORKDIR/ktm/exec.log from an earlier run")
    args = ap.parse_args(argv)

    started = time.monotonic()
    try:
        args.workdir.mkdir(parents=True, exist_ok=True)
        files = kernel_files(args.workdir, args.abi, args.version)
        ktm = args.workdir / "ktm"
        init, init_nm = build_init(ktm)
        initrd = ktm / "initrd.cpio"
        initrd.write_bytes(init_archive(init.read_bytes()))
        log = ktm / "exec.log"
        monitor = ktm / "monitor.sock"
        command = guest.qemu_command(args.qemu, files["image"], initrd, monitor, cpu=args.cpu,
                                     smp=args.smp, iters=args.iters, warmup=args.warmup,
                                     icount_shift=_icount_shift(args))
        run_info = {}
        if not args.analyse_only:
            run = guest.record(command, monitor, log, boot_timeout=args.boot_timeout,
                               run_timeout=args.run_timeout)
            run_info = {"boot_seconds": round(run.boot_seconds, 1),
                        "recorded_seconds": round(run.recorded_seconds, 1)}
            (ktm / "console.txt").write_text(run.console)
        nm_cache = args.workdir / "vmlinux.nm"
        if not nm_cache.exists():
            nm_cache.write_text(_run([CROSS_NM, "-S", "--defined-only", str(files["vmlinux"])],
                                     timeout=600).stdout.decode())
        with open(nm_cache) as f:
            nm_sizes = analyse.parse_nm_sizes(f)
        with open(log) as lf, open(files["system_map"]) as mf:
            figures = analyse_log(lf, list(mf), nm_sizes, init_nm.read_text())
    except (MeasureError, guest.GuestError, analyse.LogFormatError, OSError) as e:
        print(f"measure: {e}", file=sys.stderr)
        return 1

    qemu_version = _run([args.qemu, "--version"], timeout=60).stdout.decode().splitlines()[0]
    gcc_version = _run([CROSS_GCC, "--version"], timeout=60).stdout.decode().splitlines()[0]
    provenance = {
        "what": "Debian's arm64 kernel booted in QEMU TCG; kernel instructions executed by "
                "each syscall of a static libc-free /init, recorded only inside the measured "
                "loops with QEMU's exec log",
        "packages": package_provenance(args.workdir, args.abi, args.version),
        "kernel_release": f"{args.abi}-arm64",
        "qemu": qemu_version,
        "qemu_command": shlex.join(command),
        "qemu_log_flags": guest.LOG_FLAGS,
        "cross_compiler": gcc_version,
        "init_cflags": " ".join(CFLAGS),
        "init_source_sha256": hashlib.sha256(INIT_SOURCE.read_bytes()).hexdigest(),
        "script": "python3 -m benchmarks.realkernel.measure " + shlex.join(
            sys.argv[1:] if argv is None else argv),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "iterations": args.iters,
        "warmup_iterations": args.warmup,
        "cpus": args.smp,
        "cpu_model": args.cpu,
        "host": {"node": platform.node(), "platform": platform.platform(),
                 "machine": platform.machine(), "python": platform.python_version()},
        "statistics": "instructions_per_call is the mean over calls; text_bytes/lines/"
                      "functions_per_call are medians (median_low) over calls: interrupts "
                      "taken inside a call inflate its mean, not its median",
        "line_bytes": analyse.LINE_BYTES,
        "runtime_seconds": None,
        **run_info,
    }
    if args.keep_log and not args.analyse_only:
        args.keep_log.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, args.keep_log)
    if args.excerpt_dir:
        try:
            provenance["excerpt"] = capture_excerpt(args, files, initrd, init_nm, ktm)
        except (MeasureError, guest.GuestError, analyse.LogFormatError, OSError) as e:
            print(f"measure: excerpt: {e}", file=sys.stderr)
            return 1
    provenance["runtime_seconds"] = round(time.monotonic() - started, 1)
    doc = {"provenance": provenance, **figures}
    atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
    print_table(figures)
    print(f"wrote {args.out} in {provenance['runtime_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
