"""Fuzz target ``selftest`` (hidden from ``--target all``): a target that fails on
purpose, so the tests can watch the verdicts and the supervisor at work.

Inputs starting with ``boom`` raise KeyError (a traceback), ``multi`` a
two-line ConfigError (a violation), ``slow`` sleep past the time box (a
hang the box interrupts), ``hang`` sleep with the time box's signal blocked
(a hang only the supervisor's watchdog sees), ``crash`` kill the process
with SIGSEGV; anything else is a one-line ConfigError or a clean result.
"""

from __future__ import annotations

import os
import signal
import time

from hypothesis import strategies as st

from emu.errors import ConfigError
from fuzz.harness import Target

WORDS = (b"ok", b"bad", b"boom", b"multi", b"slow", b"hang", b"crash")


def run(data: bytes) -> str:
    if data.startswith(b"boom"):
        raise KeyError("boom")
    if data.startswith(b"multi"):
        raise ConfigError("first line\nsecond line")
    if data.startswith(b"slow"):
        time.sleep(30)
    if data.startswith(b"hang"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(3600)
    if data.startswith(b"crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if data.startswith(b"bad"):
        raise ConfigError("selftest: a documented rejection")
    return "clean"


def strategy() -> st.SearchStrategy[bytes]:
    return st.sampled_from(WORDS)


TARGET = Target(
    name="selftest",
    summary="fails on purpose (tests of the fuzz harness)",
    documented=(ConfigError,),
    run=run,
    strategy=strategy,
    seeds=lambda: list(WORDS),
    timeout=0.5,
    startup=3.0,
)
