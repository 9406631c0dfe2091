"""One fuzz case and one fuzzing loop: verdicts, the per-case time box, statistics.

A target turns input bytes into a call of the code under test. Its
``run`` returns a short label for a clean result or raises: one of the
target's documented EmuError classes (a rejection, which is fine when its
message is one non-empty line), ``PropertyViolation`` (a result or message
that breaks a stated property), or anything else (a bug: the CLI would print
a Python traceback). A case that outlives the target's time box is a hang.
Process deaths are the supervisor's business (fuzz/__main__.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import signal
import threading
import time
import traceback
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from emu.errors import EmuError

FAILURE_KINDS = ("traceback", "violation", "hang", "crash")
"""Verdicts that are bugs; "ok" and "rejected" are the two good outcomes."""

_REPO = Path(__file__).resolve().parents[1]


class PropertyViolation(Exception):
    """A clean result or an error message that breaks a property of the target."""


class CaseTimeout(BaseException):
    """Raised into a case that outlived its time box (BaseException: code under test
    that catches ``Exception`` must not swallow it)."""


@dataclass(frozen=True)
class Target:
    """A fuzz target: how to run one input and how to make inputs.

    ``documented`` are the error classes the code under test may raise;
    ``strategy()`` gives a hypothesis strategy of input bytes (mutated seeds
    and generated inputs); ``seeds()`` the valid inputs mutation starts from
    (also an atheris corpus); ``reset()`` repairs shared state after a case
    was interrupted by its time box.
    """

    name: str
    summary: str
    documented: tuple[type[EmuError], ...]
    run: Callable[[bytes], str]
    strategy: Callable[[], st.SearchStrategy[bytes]]
    seeds: Callable[[], list[bytes]]
    timeout: float = 5.0
    reset: Callable[[], None] | None = None
    startup: float = 15.0  # seconds a fresh process may take before its first case


@dataclass(frozen=True)
class Verdict:
    kind: str  # "ok", "rejected", or one of FAILURE_KINDS
    label: str  # result label, error class, or failure signature
    detail: str = ""  # message or traceback

    @property
    def failed(self) -> bool:
        return self.kind in FAILURE_KINDS


def message_problem(err: BaseException) -> str | None:
    """What is wrong with a documented error's message as a CLI line, or None."""
    text = str(err)
    if not text.strip():
        return "empty error message"
    if "\n" in text or "\r" in text:
        return "error message spans several lines"
    if any(unicodedata.category(c) == "Cc" and c != "\t" for c in text):
        return "error message carries control characters"  # a terminal would act on them
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return "error message carries undecodable bytes"  # printing it would fail
    if "Traceback (most recent call last)" in text:
        return "error message carries a traceback"
    if "internal assembler error" in text:
        return "assembler reported an internal error"
    return None


_PLACE = re.compile(r"^(?:[^\s:]*:\d+: |[^\s:]+: )")
_NUMBERS = re.compile(r"-?(?:0x[0-9a-fA-F]+|\d+)")


def message_shape(text: str) -> str:
    """A message without its place and numbers: which check fired, for the statistics."""
    text = _NUMBERS.sub("N", _PLACE.sub("", text, count=1))
    return " ".join(text.split()[:7])[:70]


def failure_signature(err: BaseException) -> str:
    """Exception class plus the innermost frame in the project: one line per distinct bug."""
    frames = traceback.extract_tb(err.__traceback__)
    inner = None
    for frame in frames:
        path = Path(frame.filename)
        if _REPO in path.parents and "fuzz" not in path.relative_to(_REPO).parts[:1]:
            inner = frame
    if inner is None and frames:
        inner = frames[-1]
    where = ""
    if inner is not None:
        path = Path(inner.filename)
        shown = path.relative_to(_REPO) if _REPO in path.parents else path.name
        where = f" at {shown}:{inner.lineno} in {inner.name}"
    return f"{type(err).__name__}{where}"


@contextlib.contextmanager
def time_box(seconds: float) -> Iterator[None]:
    """Raise CaseTimeout into the block after ``seconds`` (main thread only; elsewhere
    the supervisor's watchdog is the only guard)."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise CaseTimeout(f"no result after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_case(target: Target, data: bytes) -> Verdict:
    """Run one input and classify what happened."""
    try:
        with time_box(target.timeout):
            label = target.run(data)
    except CaseTimeout as err:
        if target.reset is not None:
            target.reset()
        return Verdict("hang", f"hang ({target.timeout:g} s)", str(err))
    except PropertyViolation as err:
        text = str(err)
        return Verdict("violation", f"violation: {text.split(':')[0][:80]}", text)
    except target.documented as err:
        problem = message_problem(err)
        if problem:
            return Verdict("violation", f"violation: {problem}", str(err)[:2000])
        return Verdict("rejected", f"{type(err).__name__}: {message_shape(str(err))}", str(err))
    except EmuError as err:
        # One line in the CLI, but the wrong class: the wrong exit status and advice.
        return Verdict("violation", f"violation: undocumented {type(err).__name__}",
                       f"{failure_signature(err)}: {err}")
    except Exception as err:  # any other exception is the finding itself
        detail = "".join(traceback.format_exception(err))
        return Verdict("traceback", failure_signature(err), detail)
    return Verdict("ok", label)


def input_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass
class Failure:
    kind: str
    signature: str
    detail: str
    example: bytes
    count: int = 1


@dataclass
class Stats:
    """What one fuzzing run saw."""

    target: str
    cases: int = 0
    seconds: float = 0.0
    kinds: Counter = field(default_factory=Counter)  # verdict kind -> count
    labels: Counter = field(default_factory=Counter)  # ok labels and rejection classes
    failures: dict[str, Failure] = field(default_factory=dict)  # signature -> first example

    def add(self, verdict: Verdict, data: bytes) -> None:
        self.cases += 1
        self.kinds[verdict.kind] += 1
        if verdict.failed:
            known = self.failures.get(verdict.label)
            if known is None:
                self.failures[verdict.label] = Failure(verdict.kind, verdict.label,
                                                       verdict.detail, data)
            else:
                known.count += 1
        else:
            self.labels[f"{verdict.kind}: {verdict.label}"] += 1

    def merge(self, other: Stats) -> None:
        self.cases += other.cases
        self.seconds += other.seconds
        self.kinds.update(other.kinds)
        self.labels.update(other.labels)
        for sig, failure in other.failures.items():
            known = self.failures.get(sig)
            if known is None:
                self.failures[sig] = failure
            else:
                known.count += failure.count

    def to_json(self) -> dict:
        return {
            "target": self.target,
            "cases": self.cases,
            "seconds": round(self.seconds, 1),
            "kinds": dict(self.kinds),
            "labels": dict(self.labels.most_common()),
            "failures": [
                {"kind": f.kind, "signature": f.signature, "count": f.count,
                 "detail": f.detail[-4000:], "example": f.example.hex()}
                for f in self.failures.values()
            ],
        }  # fmt: skip

    @classmethod
    def from_json(cls, doc: dict) -> Stats:
        stats = cls(doc["target"], doc["cases"], doc["seconds"], Counter(doc["kinds"]),
                    Counter(doc["labels"]))
        for f in doc["failures"]:
            stats.failures[f["signature"]] = Failure(
                f["kind"], f["signature"], f["detail"], bytes.fromhex(f["example"]), f["count"]
            )
        return stats


class _Stop(BaseException):
    """Ends a hypothesis loop when the time or case budget is spent."""


def fuzz_loop(
    target: Target,
    seconds: float,
    max_cases: int | None = None,
    seed_value: int = 0,
    before_case: Callable[[bytes], None] | None = None,
    checkpoint: Callable[[Stats], None] | None = None,
) -> Stats:
    """Run ``target`` on hypothesis-generated inputs for ``seconds`` (or ``max_cases``).

    Failures are recorded, never raised, so one run collects every distinct one.
    ``before_case`` sees each input first (the supervisor's crash record);
    ``checkpoint`` gets the statistics every couple of seconds and at the end.
    """
    stats = Stats(target.name)
    start = time.monotonic()
    deadline = start + seconds
    strategy = target.strategy()
    batch = seed_value
    saved_at = [start]

    def one(data: bytes) -> None:
        now = time.monotonic()
        if now >= deadline or (max_cases is not None and stats.cases >= max_cases):
            raise _Stop
        if checkpoint is not None and now - saved_at[0] > 2:
            stats.seconds = now - start
            checkpoint(stats)
            saved_at[0] = now
        if before_case is not None:
            before_case(data)
        stats.add(run_case(target, data), data)

    while time.monotonic() < deadline and (max_cases is None or stats.cases < max_cases):
        test = seed(batch)(
            settings(
                max_examples=1_000_000, deadline=None, database=None, phases=[Phase.generate],
                print_blob=False, suppress_health_check=list(HealthCheck),
            )(given(strategy)(one))
        )  # fmt: skip
        batch += 1_000_003
        with contextlib.suppress(_Stop):
            test()
    stats.seconds = time.monotonic() - start
    if checkpoint is not None:
        checkpoint(stats)
    return stats
