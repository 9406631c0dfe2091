"""The GDB server: the listening socket, one client connection, and
``GdbStub``, the ``Debugger`` the machine's run loop consults between quanta.

While the target is stopped the stub serves packets inside that call (the
run loop waits); while it runs, it looks at the socket once per quantum for
GDB's 0x03 interrupt (never per instruction).  A client that disconnects or
sends something that is not the protocol ends the session: stop points are
removed, the debugger detached, and the run goes on as if never debugged.
"""

from __future__ import annotations

import contextlib
import select
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TextIO

from emu.errors import GuestFault, UsageError
from emu.gdb.commands import SIGINT, SIGSEGV, SIGTRAP, Dispatcher, StopState
from emu.gdb.packets import Ack, BadChecksum, Interrupt, Packet, PacketReader, ProtocolError, frame
from emu.gdb.stoppoints import StopPoints
from emu.gdb.target import Target
from emu.hw.cpu import PowerState, VCpu
from emu.kernel.context import KernelContext

LOOPBACK = "127.0.0.1"
POLL_SECONDS = 0.25  # how often a blocked wait looks at Ctrl-C
MAX_BAD_PACKETS = 3  # consecutive bad checksums before the client is given up


class SessionEnded(Exception):
    """The client went away or broke the protocol (the message says which)."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_endpoint(text: str, allow_remote: bool = False) -> Endpoint:
    """``[HOST:]PORT``; HOST defaults to loopback, and any other host needs
    ``allow_remote`` (the stub reads and writes all guest memory)."""
    host, sep, port_text = text.rpartition(":")
    host = host if sep else LOOPBACK
    host = host.strip("[]") or LOOPBACK
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"--gdb {text!r}: the port is not a number") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"--gdb {text!r}: port out of range")
    if host not in (LOOPBACK, "localhost", "::1") and not allow_remote:
        raise UsageError(f"--gdb {text!r}: listening on {host} lets anyone there read and write "
                         "guest memory; add --gdb-allow-remote to do it anyway")
    return Endpoint(host, port)


class GdbServer:
    """A listening socket, bound at once (so a taken port fails before booting)."""

    def __init__(self, endpoint: Endpoint, log: TextIO = sys.stderr) -> None:
        family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((endpoint.host, endpoint.port))
        except OSError as err:
            self.sock.close()
            raise UsageError(f"--gdb {endpoint}: cannot listen: {err.strerror}") from None
        self.sock.listen(1)
        self.endpoint = Endpoint(endpoint.host, self.sock.getsockname()[1])
        self.log = log

    def accept(self, why: str, symbols: str | None = None) -> socket.socket:
        """Wait for GDB (Ctrl-C still interrupts)."""
        hint = f"; symbols: file {symbols}" if symbols else ""
        print(f"ktext-emu: gdb: {why}: waiting for a connection on {self.endpoint} "
              f"(target remote {self.endpoint}{hint})", file=self.log, flush=True)
        while True:
            ready, _, _ = select.select([self.sock], [], [], POLL_SECONDS)
            if ready:
                conn, peer = self.sock.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                print(f"ktext-emu: gdb: connected from {peer[0]}:{peer[1]}", file=self.log,
                      flush=True)
                return conn

    def close(self) -> None:
        self.sock.close()


class Connection:
    """One client: framed replies out, events in."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = PacketReader()
        self.events: list = []
        self.last_sent = b""
        self.no_ack = False
        self.bad = 0

    def send(self, payload: bytes) -> None:
        self.last_sent = frame(payload, rle=len(payload) > 64)
        try:
            self.sock.sendall(self.last_sent)
        except OSError as err:
            raise SessionEnded(f"the client went away ({err.strerror})") from None

    def _receive(self, timeout: float | None) -> bool:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return False
        try:
            data = self.sock.recv(65536)
        except OSError as err:
            raise SessionEnded(f"the client went away ({err.strerror})") from None
        if not data:
            raise SessionEnded("the client disconnected")
        try:
            self.events += self.reader.feed(data)
        except ProtocolError as err:
            raise SessionEnded(f"the client sent garbage: {err}") from None
        return True

    def poll_interrupt(self) -> bool:
        """Between quanta: True when GDB sent 0x03 (other input waits)."""
        if not self._receive(0):
            return False
        found = any(isinstance(event, Interrupt) for event in self.events)
        self.events = [event for event in self.events if not isinstance(event, Interrupt)]
        return found

    def next_packet(self, interrupted: Callable[[], bool]) -> bytes:
        """The next good packet, acked; bad checksums are nacked."""
        while True:
            while not self.events:
                if interrupted():
                    raise KeyboardInterrupt
                self._receive(POLL_SECONDS)
            event = self.events.pop(0)
            if isinstance(event, Packet):
                self.bad = 0
                if not self.no_ack:
                    self._raw(b"+")
                return event.payload
            if isinstance(event, BadChecksum):
                self.bad += 1
                if self.bad >= MAX_BAD_PACKETS:
                    raise SessionEnded(f"{self.bad} packets in a row with bad checksums")
                self._raw(b"-")
            elif isinstance(event, Ack) and not event.positive and self.last_sent:
                self._raw(self.last_sent)

    def _raw(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as err:
            raise SessionEnded(f"the client went away ({err.strerror})") from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class GdbStub:
    """The GDB session of one machine (a ``Debugger``)."""

    def __init__(self, ctx: KernelContext, sock: socket.socket, stop: StopState,
                 log: TextIO = sys.stderr) -> None:  # fmt: skip
        self.ctx = ctx
        self.machine = ctx.machine
        self.target = Target(ctx)
        self.points = StopPoints(self.machine, self.target.physical_addresses)
        self.conn: Connection | None = Connection(sock)
        self.dispatcher = Dispatcher(self.target, self.points, stop)
        self.stopped = True
        self.killed = False
        self.log = log

    @property
    def attached(self) -> bool:
        return self.conn is not None

    # ------------------------------------------------------ Debugger protocol
    def before_quantum(self, cpu: VCpu, budget: int) -> int:
        if self.conn is not None:
            try:
                if not self.stopped and self.conn.poll_interrupt():
                    self._stopped(StopState(SIGINT, cpu.index), announce=True)
                if self.stopped:
                    self.serve()
            except SessionEnded as err:
                self.end(f"{err}; the run goes on without the debugger")
        return 0 if self.killed else budget

    def after_quantum(self, cpu: VCpu) -> None:
        hit = self.points.take_hit()
        if hit is None or self.conn is None:
            return
        try:
            self._stopped(StopState.of_hit(hit), announce=True)
            self.serve()
        except SessionEnded as err:
            self.end(f"{err}; the run goes on without the debugger")

    # ---------------------------------------------------------------- serving
    def _stopped(self, stop: StopState, announce: bool) -> None:
        self.stopped = True
        self.dispatcher.stop = stop
        self.dispatcher.general_cpu = stop.cpu
        self.dispatcher.resume_cpu = None
        if announce and self.conn is not None:
            self.conn.send(stop.reply())

    def serve(self, post_mortem: bool = False) -> None:
        """Answer packets until GDB resumes the target (or leaves)."""
        conn = self.conn
        while conn is not None:
            try:
                payload = conn.next_packet(lambda: self.machine.interrupt_requested)
            except KeyboardInterrupt:
                self.machine.interrupt_requested = False
                self.end("interrupted (Ctrl-C)")
                raise
            reply = self.dispatcher.handle(payload)
            conn.no_ack = self.dispatcher.no_ack
            if isinstance(reply, bytes):
                conn.send(reply)
                continue
            if reply.action == "detach":
                conn.send(b"OK")
                self.end("detached")
                return
            if reply.action == "kill" or post_mortem:
                if post_mortem and reply.action != "kill":
                    conn.send(f"X{SIGSEGV:02x}".encode())  # the guest cannot go on
                self.killed = reply.action == "kill"
                self.end("killed" if self.killed else "the faulted guest cannot resume")
                return
            if reply.action == "step":
                self.step(reply.cpu if reply.cpu is not None else self.dispatcher.stop.cpu)
                continue
            self._step_off_breakpoint()
            self.stopped = False
            return

    def step(self, index: int) -> None:
        """One instruction of CPU ``index``; the others stay where they are."""
        vcpu = self.machine.cpus[index]
        if vcpu.power is PowerState.ON:
            self._one_instruction(vcpu)
        hit = self.points.take_hit()
        self._stopped(StopState.of_hit(hit) if hit else StopState(SIGTRAP, index), announce=True)

    def _step_off_breakpoint(self) -> None:
        """A client that continues from a breakpoint without removing it
        would hit it again at once: run that one instruction first."""
        stop = self.dispatcher.stop
        vcpu = self.machine.cpus[stop.cpu]
        if (stop.watch is None and self.points.breakpoints and vcpu.power is PowerState.ON
                and self.target.pc(vcpu) in self.points.breakpoints):
            try:
                self._one_instruction(vcpu)
            finally:
                self.points.take_hit()

    def _one_instruction(self, vcpu: VCpu) -> None:
        """Run ``vcpu`` for one instruction past any breakpoint at its PC."""
        self.points.suppress_breakpoints = True
        try:
            self.machine.switch_to(vcpu)
            self.machine.run_quantum(vcpu, 1)
        finally:
            self.points.suppress_breakpoints = False

    def end(self, why: str) -> None:
        """Close the session: hooks out, the machine runs on undebugged."""
        self.points.clear()
        if self.conn is not None:
            self.conn.close()
            self.conn = None
            print(f"ktext-emu: gdb: session ended: {why}", file=self.log, flush=True)
        self.stopped = False
        if self.machine.debugger is self:
            self.machine.debugger = None

    def exited(self) -> None:
        """The run ended (every CPU off or a limit): tell GDB, then close."""
        if self.conn is not None:
            with contextlib.suppress(SessionEnded):
                self.conn.send(b"W00")
            self.end("the run ended")


def first_cpu(ctx: KernelContext) -> int:
    return next((vcpu.index for vcpu in ctx.machine.cpus if vcpu.power is PowerState.ON), 0)


@contextlib.contextmanager
def debug_session(server: GdbServer, ctx: KernelContext, on_start: bool, on_fault: bool,
                  label: str = "", symbols: str | None = None) -> Iterator[None]:  # fmt: skip
    """Around one run of ``ctx``'s machine: GDB attached before the first
    instruction (``on_start``) and/or given the machine when the guest
    faults (``on_fault``, or whenever a session is still open)."""
    stub = None
    if on_start:
        sock = server.accept(f"{label} stopped before the first instruction".strip(), symbols)
        stub = GdbStub(ctx, sock, StopState(SIGTRAP, first_cpu(ctx)), server.log)
        ctx.machine.debugger = stub
    try:
        yield
    except GuestFault as fault:
        cpu = fault.report.cpu if fault.report is not None else first_cpu(ctx)
        waiting = stub is not None and stub.attached  # GDB waits for a stop reply
        if not waiting:
            if not on_fault:
                raise
            sock = server.accept(f"guest fault ({fault}) on CPU {cpu}", symbols)
            stub = GdbStub(ctx, sock, StopState(SIGSEGV, cpu), server.log)
        stub.points.clear()
        try:
            stub._stopped(StopState(SIGSEGV, cpu), announce=waiting)
            stub.serve(post_mortem=True)
        except SessionEnded as err:
            stub.end(str(err))
        stub.end("the run ended in a guest fault")
        raise
    finally:
        if stub is not None:
            stub.exited()
            if ctx.machine.debugger is stub:
                ctx.machine.debugger = None
