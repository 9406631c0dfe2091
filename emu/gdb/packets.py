"""GDB remote serial protocol framing: ``$payload#cs`` packets, their
checksums, the ``}`` escape, run-length encoding, ``+``/``-`` acks and the
0x03 interrupt byte, as the GDB manual's "Overview" of the remote protocol
describes them.  Pure functions and a byte-stream reader; no sockets here.
"""

from __future__ import annotations

from dataclasses import dataclass

ESCAPE = 0x7D  # '}'
ESCAPED = frozenset(b"#$}*")
INTERRUPT = 0x03
# The largest packet we accept and advertise (qSupported PacketSize): large
# enough for a 'G' of every register and a few KiB of 'X'.
MAX_PACKET = 16384
RLE_MIN_RUN = 4  # shorter runs are cheaper written out


class ProtocolError(Exception):
    """The peer sent something that is not the remote protocol."""


def checksum(data: bytes) -> int:
    """The modulo-256 sum of the payload bytes (as sent, escapes included)."""
    return sum(data) & 0xFF


def escape(data: bytes) -> bytes:
    """Escape ``#``, ``$``, ``}`` and ``*`` as ``}`` then the byte XOR 0x20."""
    out = bytearray()
    for byte in data:
        if byte in ESCAPED:
            out += bytes((ESCAPE, byte ^ 0x20))
        else:
            out.append(byte)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    """Undo ``escape`` (binary data of ``X`` packets and escaped replies)."""
    out = bytearray()
    it = iter(data)
    for byte in it:
        if byte == ESCAPE:
            nxt = next(it, None)
            if nxt is None:
                raise ProtocolError("packet ends inside an escape")
            out.append(nxt ^ 0x20)
        else:
            out.append(byte)
    return bytes(out)


def rle_decode(data: bytes) -> bytes:
    """Expand ``c*N``: the byte ``c`` then N-29 more copies of it."""
    out = bytearray()
    index = 0
    while index < len(data):
        byte = data[index]
        if byte == ord("*"):
            if not out or index + 1 >= len(data):
                raise ProtocolError("run-length marker without a byte to repeat")
            out += bytes((out[-1],)) * (data[index + 1] - 29)
            index += 2
            continue
        out.append(byte)
        index += 1
    return bytes(out)


def rle_encode(data: bytes) -> bytes:
    """Run-length encode ``data`` (already escaped); the repeat character is
    printable and never ``#`` or ``$`` (runs of 7 and 8 are split)."""
    out = bytearray()
    index = 0
    while index < len(data):
        byte = data[index]
        run = 1
        while index + run < len(data) and data[index + run] == byte and run < 98:
            run += 1
        if byte in (ord("*"), ESCAPE) or run < RLE_MIN_RUN:
            out += bytes((byte,)) * run
        else:
            repeats = run - 1
            if repeats + 29 in (ord("#"), ord("$")):
                repeats = 5  # '"' (34): the rest goes round again
                run = repeats + 1
            out += bytes((byte, ord("*"), repeats + 29))
        index += run
    return bytes(out)


def frame(payload: bytes, rle: bool = False) -> bytes:
    """The packet carrying ``payload``: escaped, optionally run-length encoded."""
    body = escape(payload)
    if rle:
        body = rle_encode(body)
    return b"$" + body + b"#" + f"{checksum(body):02x}".encode()


@dataclass(frozen=True)
class Packet:
    payload: bytes  # run-length decoded; escapes left for the command to undo


@dataclass(frozen=True)
class BadChecksum:
    payload: bytes


@dataclass(frozen=True)
class Interrupt:
    pass


@dataclass(frozen=True)
class Ack:
    positive: bool


Event = Packet | BadChecksum | Interrupt | Ack


class PacketReader:
    """Turns the bytes a client sends into events; raises ProtocolError on
    anything else (a byte outside a packet that is not an ack or 0x03, an
    unterminated or oversized packet, a checksum that is not hex)."""

    def __init__(self, max_packet: int = MAX_PACKET) -> None:
        self.max_packet = max_packet
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Event]:
        self._buffer += data
        events: list[Event] = []
        buffer = self._buffer
        while buffer:
            first = buffer[0]
            if first == ord("+") or first == ord("-"):
                events.append(Ack(first == ord("+")))
                del buffer[0]
            elif first == INTERRUPT:
                events.append(Interrupt())
                del buffer[0]
            elif first == ord("$"):
                end = buffer.find(b"#")
                if end < 0:
                    if len(buffer) > self.max_packet + 4:
                        raise ProtocolError(f"packet longer than {self.max_packet} bytes")
                    break
                if len(buffer) < end + 3:
                    break
                body = bytes(buffer[1:end])
                digits = bytes(buffer[end + 1 : end + 3])
                del buffer[: end + 3]
                try:
                    sent = int(digits, 16)
                except ValueError:
                    raise ProtocolError(f"checksum {digits!r} is not hex") from None
                if sent != checksum(body):
                    events.append(BadChecksum(body))
                else:
                    events.append(Packet(rle_decode(body)))
            else:
                raise ProtocolError(f"unexpected byte {first:#04x} outside a packet")
        return events


def hex_bytes(data: bytes) -> bytes:
    return data.hex().encode()


def parse_hex(text: bytes) -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise ProtocolError(f"not a hex number: {text[:32]!r}") from None


def le_hex(value: int, size: int) -> bytes:
    """``value`` as ``size`` little-endian bytes, hex encoded (register values)."""
    return value.to_bytes(size, "little").hex().encode()
