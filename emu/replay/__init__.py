"""Replay of real kernel instruction traces (QEMU ``-d exec`` logs, ``perf
script`` output) through the replication and cost model of ``ktext-emu run``.

Modules: ``errors`` (TraceError), ``symbols`` (System.map), ``formats`` (trace
parsers yielding record arrays; the C scanner is ``_qemulog.c``), ``blocks``
(block sizes from a kernel image or the next record), ``player`` (counts per
CPU and node, the cache model adapter, the RUNs), ``api`` (``replay_trace``,
what the ``replay`` command of emu/cli/replay.py calls).
"""
