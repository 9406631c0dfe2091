"""The packet dispatcher: one GDB request in, one reply (or a resume
action for the server to carry out) out.  Threads are CPUs: thread id =
CPU index + 1 (GDB reserves 0 and -1).
"""

from __future__ import annotations

from dataclasses import dataclass

from unicorn import UcError

from emu.gdb import packets
from emu.gdb.monitor import run_monitor
from emu.gdb.packets import ProtocolError, le_hex, parse_hex
from emu.gdb.stoppoints import WATCH_NAMES, Hit, StopPoints
from emu.gdb.target import Target, TargetError
from emu.gdb.target_xml import REGISTERS, target_xml, xfer_slice
from emu.hw.cpu import VCpu
from emu.hw.physmem import PhysAddrError

SIGINT, SIGTRAP, SIGSEGV, SIGKILL = 2, 5, 11, 9
E_BADARGS, E_NOTHREAD, E_MEMORY = b"E01", b"E02", b"E14"
SUPPORTED = (f"PacketSize={packets.MAX_PACKET:x};qXfer:features:read+;vContSupported+;"
             "QStartNoAckMode+;hwbreak+").encode()


@dataclass(frozen=True)
class Resume:
    """What the server must do next: ``step`` one CPU, ``continue`` them all,
    ``detach`` or ``kill``."""

    action: str
    cpu: int | None = None


@dataclass
class StopState:
    signal: int
    cpu: int
    watch: tuple[int, int] | None = None  # (Z type, address) of a watchpoint hit

    def reply(self) -> bytes:
        text = f"T{self.signal:02x}"
        if self.watch is not None:
            text += f"{WATCH_NAMES[self.watch[0]]}:{self.watch[1]:x};"
        return (text + f"thread:{self.cpu + 1:x};").encode()

    @classmethod
    def of_hit(cls, hit: Hit) -> StopState:
        watch = (hit.kind, hit.address) if hit.kind in WATCH_NAMES else None
        return cls(SIGTRAP, hit.cpu, watch)


class Dispatcher:
    """The session state GDB's requests read and change."""

    def __init__(self, target: Target, points: StopPoints, stop: StopState) -> None:
        self.target = target
        self.points = points
        self.stop = stop
        self.general_cpu = stop.cpu  # Hg: registers and memory
        self.resume_cpu: int | None = None  # Hc: c/s without a thread (None: the stopped one)
        self.no_ack = False
        self._xml = target_xml().encode()

    # ------------------------------------------------------------ helpers
    def _thread(self, text: bytes) -> int | None:
        """A CPU index from a thread id (None: any or all)."""
        if text in (b"-1", b"0", b""):
            return None
        cpu = parse_hex(text) - 1
        self.target.cpu(cpu)
        return cpu

    def _vcpu(self) -> VCpu:
        return self.target.cpu(self.general_cpu)

    def _read_registers(self) -> bytes:
        out = []
        vcpu = self._vcpu()
        for regnum, reg in enumerate(REGISTERS):
            value = self.target.read_register(vcpu, regnum)
            out.append(b"xx" * reg.size if value is None else le_hex(value, reg.size))
        return b"".join(out)

    def _write_registers(self, data: bytes) -> bytes:
        vcpu = self._vcpu()
        offset = 0
        for regnum, reg in enumerate(REGISTERS):
            chunk = data[offset : offset + 2 * reg.size]
            if len(chunk) < 2 * reg.size:
                break
            offset += 2 * reg.size
            if b"x" in chunk or reg.name == "CurrentEL":
                continue
            self.target.write_register(vcpu, regnum, int.from_bytes(bytes.fromhex(chunk.decode()),
                                                                    "little"))
        return b"OK"

    # ----------------------------------------------------------- dispatch
    def handle(self, payload: bytes) -> bytes | Resume:
        try:
            return self._handle(payload)
        except TargetError as err:
            return E_NOTHREAD if str(err).startswith("no CPU") else E_MEMORY
        except (PhysAddrError, ProtocolError, UcError, ValueError, IndexError):
            return E_BADARGS  # a malformed argument fails this request, not the session

    def _handle(self, payload: bytes) -> bytes | Resume:
        if not payload:
            return b""
        head, body = payload[:1], payload[1:]
        if payload == b"?":
            return self.stop.reply()
        if head == b"g":
            return self._read_registers()
        if head == b"G":
            return self._write_registers(body)
        if head == b"p":
            regnum = parse_hex(body)
            value = self.target.read_register(self._vcpu(), regnum)
            size = REGISTERS[regnum].size
            return b"xx" * size if value is None else le_hex(value, size)
        if head == b"P":
            number, _, value = body.partition(b"=")
            regnum = parse_hex(number)
            if regnum >= len(REGISTERS):
                return E_BADARGS
            self.target.write_register(self._vcpu(), regnum,
                                       int.from_bytes(bytes.fromhex(value.decode()), "little"))
            return b"OK"
        if head == b"m":
            address, _, length = body.partition(b",")
            data = self.target.read_memory(self._vcpu(), parse_hex(address),
                                           min(parse_hex(length), packets.MAX_PACKET // 2 - 8))
            return data.hex().encode()
        if head in (b"M", b"X"):
            where, _, data = body.partition(b":")
            address, _, length = where.partition(b",")
            raw = bytes.fromhex(data.decode()) if head == b"M" else packets.unescape(data)
            if len(raw) != parse_hex(length):
                return E_BADARGS
            if raw:
                self.target.write_memory(self._vcpu(), parse_hex(address), raw)
            return b"OK"
        if head in (b"Z", b"z"):
            kind, address, length = body.split(b",")[:3]
            kind_n = int(kind)
            length_n = parse_hex(length.split(b";")[0])
            if head == b"Z":
                done = self.points.insert(kind_n, parse_hex(address), length_n)
            else:
                done = self.points.remove(kind_n, parse_hex(address), length_n)
                done = True
            return b"OK" if done else b""
        if head == b"H":
            cpu = self._thread(body[1:])
            if body[:1] == b"g":
                self.general_cpu = self.stop.cpu if cpu is None else cpu
            else:
                self.resume_cpu = cpu
            return b"OK"
        if head == b"T":
            cpu = self._thread(body)
            return b"OK" if cpu is not None else E_NOTHREAD
        if head in (b"c", b"C"):
            return Resume("continue")
        if head in (b"s", b"S"):
            return Resume("step", self.resume_cpu if self.resume_cpu is not None
                          else self.stop.cpu)
        if head == b"D":
            return Resume("detach")
        if head == b"k":
            return Resume("kill")
        if head == b"v":
            return self._v(payload)
        if head == b"q" or head == b"Q":
            return self._query(payload)
        return b""

    def _v(self, payload: bytes) -> bytes | Resume:
        if payload == b"vCont?":
            return b"vCont;c;C;s;S"
        if payload.startswith(b"vCont;"):
            steps = []
            for action in payload[6:].split(b";"):
                verb, _, thread = action.partition(b":")
                if verb[:1] in (b"s", b"S"):
                    cpu = self._thread(thread)
                    steps.append(self.stop.cpu if cpu is None else cpu)
            return Resume("step", steps[0]) if steps else Resume("continue")
        if payload.startswith(b"vKill"):
            return Resume("kill")
        return b""

    def _query(self, payload: bytes) -> bytes | Resume:
        if payload.startswith(b"qSupported"):
            return SUPPORTED
        if payload == b"QStartNoAckMode":
            self.no_ack = True
            return b"OK"
        if payload.startswith(b"qXfer:features:read:"):
            annex, _, span = payload[len(b"qXfer:features:read:"):].partition(b":")
            if annex != b"target.xml":
                return b"E00"
            offset, _, length = span.partition(b",")
            return xfer_slice(self._xml, parse_hex(offset), parse_hex(length))
        if payload == b"qfThreadInfo":
            return b"m" + b",".join(f"{vcpu.index + 1:x}".encode()
                                    for vcpu in self.target.machine.cpus)
        if payload == b"qsThreadInfo":
            return b"l"
        if payload == b"qC":
            return f"QC{self.stop.cpu + 1:x}".encode()
        if payload == b"qAttached":
            return b"1"
        if payload.startswith(b"qThreadExtraInfo,"):
            vcpu = self.target.cpu(parse_hex(payload.split(b",")[1]) - 1)
            state = vcpu.power.value if self.target.online(vcpu) else "not up"
            return f"CPU {vcpu.index} node {vcpu.node} {state}".encode().hex().encode()
        if payload.startswith(b"qRcmd,"):
            line = bytes.fromhex(payload[6:].decode()).decode()
            return run_monitor(self.target, self._vcpu(), line).encode().hex().encode()
        if payload == b"qSymbol::":
            return b"OK"
        return b""
