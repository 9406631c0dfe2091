"""A minimal GDB remote protocol client over a socket, for the stub's tests."""

from __future__ import annotations

import socket

from emu.gdb.packets import frame


class Client:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=60)
        self.buffer = b""

    def raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the stub closed the connection")
        self.buffer += data

    def read_byte(self) -> bytes:
        while not self.buffer:
            self._fill()
        byte, self.buffer = self.buffer[:1], self.buffer[1:]
        return byte

    def reply(self) -> bytes:
        """The next packet's payload (acked), skipping acks before it."""
        while True:
            while b"#" not in self.buffer or len(self.buffer) < self.buffer.index(b"#") + 3:
                self._fill()
            start = self.buffer.index(b"$")
            end = self.buffer.index(b"#", start)
            body = self.buffer[start + 1 : end]
            self.buffer = self.buffer[end + 3 :]
            self.raw(b"+")
            from emu.gdb.packets import rle_decode, unescape

            return unescape(rle_decode(body))

    def ask(self, payload: bytes) -> bytes:
        self.raw(frame(payload))
        assert self.read_byte() == b"+"
        return self.reply()

    def close(self) -> None:
        self.sock.close()
