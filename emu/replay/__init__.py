"""Replay of real kernel instruction traces (QEMU ``-d exec`` logs, ``perf
script`` output) through the replication and cost model of ``ktext-emu run``.

Modules: ``errors`` (TraceError), ``symbols`` (System.map), ``formats`` (trace
parsers yielding record arrays), ``blocks`` (translated-block sizes from a
kernel image), ``player`` (counts per CPU and node, the RUN report),
``command`` (the ``replay`` subcommand).
"""
