"""A GDB remote serial protocol stub for the emulated machine: every CPU a
thread, memory through the selected CPU's translation (so kernel text reads
as that CPU's node copy), breakpoints and watchpoints kept in the emulator
(no copy's bytes change), and ``monitor`` commands about nodes and copies.

packets.py frames the byte stream, target_xml.py describes the registers,
target.py reads and writes the machine, monitor.py answers ``monitor``,
commands.py dispatches packets, server.py owns the socket and the run loop
hook (``GdbStub``, a ``emu.hw.machine.Debugger``).
"""
