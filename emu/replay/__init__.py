"""Replay of real kernel instruction traces (QEMU ``-d exec`` logs, ``perf
script`` output) through the replication and cost model of ``ktext-emu run``.

Modules: ``errors`` (TraceError), ``symbols`` (System.map), ``records`` (the
record arrays, reading a trace in chunks), ``qemu_log`` and ``perf_script``
(the two formats; QEMU's C scanner is ``_qemulog.c``), ``formats`` (which
format a file is), ``blocks``
(block sizes from a kernel image or the next record), ``player`` (counts per
CPU and node, the cache model adapter, the RUNs), ``api`` (``replay_trace``,
what the ``replay`` command of emu/cli/replay.py calls).
"""
