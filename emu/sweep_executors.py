"""Where sweep points run.  Owns one point's execution on a worker
(``run_point``: emu/api.py's ``run_comparison`` of the point's RunOptions,
exactly the runs ``ktext-emu run`` would do, summarised into one row) and the two executors that spread
points over workers: ``LocalExecutor`` (one forked process per point on this
machine, at most ``jobs`` at a time) and ``RayExecutor`` (one Ray task per
point on a Ray cluster or a local Ray instance).

Everything in a row but its ``timing`` object depends only on the point's
options, so the same point gives the same row on any executor.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from emu.api import Report, run_comparison
from emu.errors import EmuError, UsageError
from emu.jsonfmt import by_node, by_node_total
from emu.report import local_kernel_shares, measured_counts
from emu.run_options import RunOptions

STATUS_OK = "ok"
STATUS_ERROR = "error"  # an EmuError: deterministic, part of the results
STATUS_CRASH = "crash"  # a bug or a dead worker: not a result, --resume runs it again

RAY_INSTALL_HINT = (
    "--executor ray needs Ray, which is not installed: pip install 'ktext-emu[cluster]' "
    "(from a source checkout: pip install '.[cluster]')"
)

_FAULT_KEYS = ("what", "cpu", "node", "pc", "symbol", "esr", "far")


@dataclass(frozen=True)
class Point:
    """One point of a grid, as shipped to a worker."""

    index: int  # position in the grid's order
    point_id: str  # stable: a hash of the point's run arguments
    options: dict[str, Any] = field(hash=False)  # option name -> value as written in the grid
    argv: tuple[str, ...] = ()  # the `ktext-emu run` arguments of the point
    run: RunOptions = field(default_factory=RunOptions, hash=False)  # what the point runs


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def run_point(point: Point) -> dict:
    """Run one point (both replication settings when the options say so) and return its row."""
    started = time.perf_counter()
    error: BaseException | None = None
    report = Report()
    try:
        run_comparison(point.run, report=report)
    except Exception as err:
        error = err
    # The row is made from the report as ``ktext-emu run --json`` writes it:
    # JSON's types, not Python's.  After an EmuError that is the partial
    # report; after a bug (not an EmuError) the CLI writes none, so neither here.
    document = None
    if error is None or isinstance(error, EmuError):
        document = json.loads(json.dumps(report.to_json()))
    return make_row(point, document, error, time.perf_counter() - started)


def make_row(point: Point, report: dict | None, error: BaseException | None,
             seconds: float) -> dict:
    """The row of a point from its run report (possibly partial) and the error it raised."""
    runs = report["runs"] if report else []
    timings = report["timings"] if report else []
    if error is None:
        status, message, error_type = STATUS_OK, None, None
    elif isinstance(error, EmuError):
        status, message, error_type = STATUS_ERROR, one_line(str(error)), type(error).__name__
    else:
        status, error_type = STATUS_CRASH, type(error).__name__
        message = one_line(f"internal error (a bug in ktext-emu): {error_type}: {error}")
    machine = None
    if runs:
        described = runs[0]["machine"]
        machine = {key: described[key] for key in
                   ("name", "nodes", "cpus_per_node", "granule", "va_bits", "levels")}
    run_rows: dict[str, dict] = {}
    run_timings: dict[str, dict] = {}
    for position, run in enumerate(runs):
        mode = "on" if run["ktext_requested"] else "off"
        run_rows[mode] = summarize_run(run)
        if position < len(timings):
            timing = timings[position]
            run_timings[mode] = {key: timing[key] for key in timing if key != "ktext"}
    return {
        "id": point.point_id,
        "index": point.index,
        "status": status,
        "error": message,
        "error_type": error_type,
        "options": dict(point.options),
        "machine": machine,
        "runs": run_rows,
        # Everything that varies from one execution of the same point to the next.
        "timing": {
            "seconds": round(seconds, 3),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "runs": run_timings,
        },
    }


def summarize_run(run: dict) -> dict:
    """The key results of one RUN of the ``{"runs": [...]}`` report."""
    # kernel fetches of the measurement windows (boot and set-up apart)
    local = sum(by_node(measured_counts(cpu)["kernel_fetches_by_node"], cpu["node"])
                for cpu in run["cpus"])
    total = sum(by_node_total(measured_counts(cpu)["kernel_fetches_by_node"]) for cpu in run["cpus"])
    shares = local_kernel_shares(run)
    window = run.get("window") or {}
    summary: dict[str, Any] = {
        "ktext": run["ktext"],
        "ktext_message": run.get("ktext_message"),
        "stop_reason": run.get("stop_reason"),
        "iterations": run.get("iterations"),
        "instructions": run["instructions"],
        "window_iterations": window.get("iterations"),
        "window_instructions": window.get("instructions"),
        "setup_instructions": window.get("setup_instructions"),
        "migrations": run.get("migrations"),
        "kernel_fetches": total,
        "local_kernel_fetches": local,
        "local_kernel_share": None if total == 0 else local / total,
        "local_kernel_share_by_node": [
            shares.get(node) for node in range(run["machine"]["nodes"])
        ],
        "checks": dict(run["checks"]),
    }
    if isinstance(run.get("cost"), dict):
        summary["cost"] = _flat_figures(run["cost"])
    if isinstance(run.get("fault"), dict):
        summary["fault"] = {key: run["fault"].get(key) for key in ("message", *_FAULT_KEYS)}
    return summary


def _flat_figures(cost: dict) -> dict:
    """The cost object's scalars (model, totals, speed-up) and per-node lists;
    not its tables or per-CPU figures, which would make a column per CPU."""
    figures = {}
    for key, value in cost.items():
        if value is None or isinstance(value, int | float | str | bool):
            figures[key] = value
        elif "node" in key and isinstance(value, list) and all(
            isinstance(item, int | float) for item in value
        ):
            figures[key] = list(value)
    return figures


def crash_row(point: Point, message: str, seconds: float = 0.0) -> dict:
    row = make_row(point, None, None, seconds)
    row.update(status=STATUS_CRASH, error=one_line(message), error_type="WorkerLost")
    return row


# -- local: one process per point ------------------------------------------


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _die_with_parent(parent_pid: int) -> None:
    """A killed sweep must not leave its points running."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _point_process(point: Point, conn: multiprocessing.connection.Connection,
                   parent_pid: int) -> None:
    # Ctrl-C reaches the whole process group: the sweep handles it and stops
    # its points, so a point must not die of it with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The sweep's SIGTERM handler (pass it on as SIGINT) is inherited by fork;
    # here SIGINT is ignored, so a point takes SIGTERM's default: it ends.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent_pid)
    conn.send(run_point(point))
    conn.close()


def _exit_text(exitcode: int | None) -> str:
    if exitcode is None:
        return "no exit status"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


class _Pending:
    """The points still to start, taken from ``points`` one at a time (a
    sweep's points are built lazily; a queue of them all would build them all)."""

    def __init__(self, points: Iterable[Point]) -> None:
        self._points = iter(points)
        self._next: Point | None = next(self._points, None)

    def __bool__(self) -> bool:
        return self._next is not None

    def popleft(self) -> Point:
        point = self._next
        if point is None:
            raise IndexError("no point left")
        self._next = next(self._points, None)
        return point


class LocalExecutor:
    """Points as child processes of this one, at most ``jobs`` at a time.

    A process per point (not a pool) isolates points completely: a point that
    kills its process (a segfault in native code) costs only its own row.
    """

    name = "local"

    def __init__(self, jobs: int | None = None) -> None:
        self.jobs = jobs or default_jobs()
        methods = multiprocessing.get_all_start_methods()
        # fork: a point starts with every module already imported.
        self.context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")

    def start(self) -> None:
        pass

    def run(self, points: Sequence[Point]) -> Iterator[dict]:
        """Yield each point's row as it finishes (in completion order)."""
        waiting = _Pending(points)
        running: dict[Any, tuple[Any, Point, float]] = {}
        try:
            while waiting or running:
                while waiting and len(running) < self.jobs:
                    point = waiting.popleft()
                    receiver, sender = self.context.Pipe(duplex=False)
                    process = self.context.Process(
                        target=_point_process, args=(point, sender, os.getpid()),
                        name=f"ktext-emu-point-{point.point_id}",
                    )
                    process.start()
                    sender.close()
                    running[receiver] = (process, point, time.perf_counter())
                for receiver in multiprocessing.connection.wait(list(running)):
                    process, point, started = running.pop(receiver)
                    try:
                        row = receiver.recv()
                    except EOFError:
                        row = None
                    receiver.close()
                    process.join()
                    if row is None:
                        row = crash_row(point, f"the point's process died "
                                        f"({_exit_text(process.exitcode)})",
                                        time.perf_counter() - started)
                    yield row
        finally:
            for receiver, (process, _, _) in running.items():
                process.kill()
                process.join()
                receiver.close()

    def close(self) -> None:
        pass


# -- Ray: one task per point ------------------------------------------------


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(RAY_INSTALL_HINT) from None
    return ray


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse a HOST:PORT nobody listens on: Ray itself would retry for minutes."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and the like: Ray finds the cluster itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UsageError(f"cannot reach the Ray cluster at {address}: {reason}") from None


class RayExecutor:
    """Points as Ray tasks (one CPU each) on the cluster at ``address``, or on a
    local Ray instance of ``jobs`` CPUs when no address is given.

    Every node of a cluster needs ktext-emu installed (the same version), and
    file options in the grid (machine files, --add sources, --kernel) must be
    at the same paths on every node.
    """

    name = "ray"

    def __init__(self, address: str | None = None, jobs: int | None = None) -> None:
        self.ray = import_ray()
        self.address = address
        self.jobs = jobs
        self._started_here = False

    def start(self) -> None:
        """Connect to the cluster, or start the local instance."""
        ray = self.ray
        if ray.is_initialized():
            return
        options: dict[str, Any] = {"logging_level": logging.ERROR}
        if self.address is None:
            options.update(include_dashboard=False, num_cpus=self.jobs or default_jobs())
        else:
            check_reachable(self.address)
            options["address"] = self.address
        try:
            ray.init(**options)
        except Exception as err:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
            raise UsageError(f"cannot start or reach {where}: {one_line(str(err))}") from None
        self._started_here = True

    def run(self, points: Sequence[Point]) -> Iterator[dict]:
        """Yield each point's row as it finishes (in completion order)."""
        if not points:
            return
        ray = self.ray
        self.start()
        task = ray.remote(num_cpus=1)(run_point)
        waiting = _Pending(points)
        # With --jobs on a cluster, no more than that many points in flight;
        # otherwise the cluster's scheduler queues them all.
        limit = self.jobs if (self.jobs and self.address) else len(points)
        in_flight: dict[Any, tuple[Point, float]] = {}
        try:
            while waiting or in_flight:
                while waiting and len(in_flight) < limit:
                    point = waiting.popleft()
                    in_flight[task.remote(point)] = (point, time.perf_counter())
                refs = list(in_flight)
                done, rest = ray.wait(refs, num_returns=1)
                if rest:  # collect every other point that is ready too
                    more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                    done += more
                for ref in done:
                    point, started = in_flight.pop(ref)
                    try:
                        row = ray.get(ref)
                    except ray.exceptions.RayError as err:
                        first_line = (str(err).strip().splitlines() or [""])[0]
                        row = crash_row(point, f"Ray task failed: {type(err).__name__}: "
                                        f"{first_line}", time.perf_counter() - started)
                    yield row
        finally:
            for ref in in_flight:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started_here and self.ray.is_initialized():
            self.ray.shutdown()
            self._started_here = False
