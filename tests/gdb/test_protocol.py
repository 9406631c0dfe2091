"""The stub's protocol layer: framing, checksums, escapes and run-length
encoding as pure functions, then a Python socket client against a running
emulator: the handshake, registers, memory through a CPU's translation,
writes to text under the patching rules, bad checksums, garbage,
disconnects, Ctrl-C, kill, --gdb-on-fault, and the loopback default.
"""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rsp_client import Client
from stub_process import start_stub

from emu.blob.elf import read_elf
from emu.gdb.packets import (
    Ack,
    BadChecksum,
    Interrupt,
    Packet,
    PacketReader,
    ProtocolError,
    checksum,
    escape,
    frame,
    rle_decode,
    rle_encode,
    unescape,
)
from emu.gdb.target_xml import REGISTERS, REGNUM

ASM = Path(__file__).parents[1] / "system" / "asm"
MACHINE = ("--ktext", "on", "--nodes", "2", "--cpus-per-node", "2")


# ------------------------------------------------------------------ framing
def test_checksum_and_frame():
    assert checksum(b"OK") == 0x9A
    assert frame(b"OK") == b"$OK#9a"
    assert frame(b"a#b") == b"$a}\x03b#" + f"{checksum(b'a}' + bytes([0x03]) + b'b'):02x}".encode()


@given(st.binary(max_size=300))
def test_escape_and_rle_round_trip(data):
    escaped = escape(data)
    assert unescape(escaped) == data
    encoded = rle_encode(escaped)
    assert b"#" not in encoded and b"$" not in encoded  # never a count that reads as a frame
    assert unescape(rle_decode(encoded)) == data


def test_rle_decodes_the_manual_example():
    assert rle_decode(b"0* ") == b"0000"  # ' ' is 32: three more


def test_reader_events_across_feeds():
    reader = PacketReader()
    assert reader.feed(b"+$g#6") == [Ack(True)]
    assert reader.feed(b"7\x03-$g#00") == [Packet(b"g"), Interrupt(), Ack(False), BadChecksum(b"g")]


@pytest.mark.parametrize("garbage", [b"hello", b"$g#zz", b"\xff"])
def test_reader_refuses_garbage(garbage):
    with pytest.raises(ProtocolError):
        PacketReader().feed(garbage)


def test_reader_refuses_an_endless_packet():
    with pytest.raises(ProtocolError, match="longer"):
        PacketReader(max_packet=64).feed(b"$" + b"a" * 100)


def test_target_description_names_gdb_features():
    from emu.gdb.target_xml import target_xml

    root = ET.fromstring(target_xml().split("\n", 2)[2])
    features = {f.get("name"): [r.get("name") for r in f.findall("reg")] for f in root.findall("feature")}
    assert features["org.gnu.gdb.aarch64.core"][:3] == ["x0", "x1", "x2"]
    assert features["org.gnu.gdb.aarch64.core"][-3:] == ["sp", "pc", "cpsr"]
    assert len(features["org.gnu.gdb.aarch64.fpu"]) == 34
    assert "TTBR1_EL1" in features["org.ktext-emu.aarch64.sysregs"]


# ---------------------------------------------------------------- a session
def _reg(client: Client, name: str) -> int:
    return int.from_bytes(bytes.fromhex(client.ask(f"p{REGNUM[name]:x}".encode()).decode()),
                          "little")


def test_session_over_a_socket(tmp_path):
    stub = start_stub(tmp_path, *MACHINE, "--workload", "key_storm", "--iterations", "5")
    client = Client(stub.host, stub.port)
    elf = read_elf(stub.elf)
    try:
        assert b"qXfer:features:read+" in client.ask(b"qSupported:multiprocess+;swbreak+")
        assert client.ask(b"?") == b"T05thread:1;"
        assert client.ask(b"qfThreadInfo") == b"m1,2,3,4"
        assert client.ask(b"qsThreadInfo") == b"l"
        xml = client.ask(b"qXfer:features:read:target.xml:0,ffff")
        assert xml.startswith(b"l<?xml")
        registers = client.ask(b"g")
        assert len(registers) == 2 * sum(reg.size for reg in REGISTERS)
        assert _reg(client, "pc") == elf.symbol_value("start_kernel")
        assert _reg(client, "CurrentEL") == 4
        # Run CPU 3 to static_key_probe: a breakpoint leaves the text alone.
        probe = elf.symbol_value("static_key_probe")
        assert client.ask(f"Z0,{probe:x},4".encode()) == b"OK"
        stop = client.ask(b"c")
        while stop != b"T05thread:4;":
            assert stop.startswith(b"T05thread:")
            stop = client.ask(b"vCont;c")
        assert client.ask(b"Hg4") == b"OK"
        assert _reg(client, "pc") == probe
        # Memory through CPU 3's translation: node 1's copy, the same bytes.
        word = client.ask(f"m{probe:x},4".encode())
        assert bytes.fromhex(word.decode()) == elf.read(probe, 4)
        ttbr1 = _reg(client, "TTBR1_EL1")
        ktext = bytes.fromhex(client.ask(b"qRcmd," + b"ktext".hex().encode()).decode()).decode()
        assert f"node 1: pgd {ttbr1 & 0xFFFF_FFFF_FFFE:#x}" in ktext
        # A write to text goes to every copy...
        nop = "1f2003d5"
        site = elf.symbol_value("static_key_probe") + 4
        assert client.ask(f"M{site:x},4:{nop}".encode()) == b"OK"
        copies = bytes.fromhex(client.ask(
            b"qRcmd," + f"copies {site:#x}".encode().hex().encode()).decode()).decode()
        assert copies.count("0xd503201f") == 2 and "identical" in copies
        # ... or to the one node asked for, clearly.
        said = bytes.fromhex(client.ask(b"qRcmd," + b"text-writes node 1".hex().encode()).decode())
        assert b"ONLY" in said
        assert client.ask(f"X{site:x},4:".encode() + bytes.fromhex("000080d2")) == b"OK"
        copies = bytes.fromhex(client.ask(
            b"qRcmd," + f"copies {site:#x}".encode().hex().encode()).decode()).decode()
        assert "COPIES DIFFER" in copies
        client.ask(b"qRcmd," + b"text-writes all".hex().encode())
        assert client.ask(f"X{site:x},4:".encode() + elf.read(site, 4)) == b"OK"
        # Malformed arguments fail the request, not the session.
        for bad in (b"mzz,4", b"p999", b"Hg99", b"Z0,xyz", b"qRcmd,zz", b"M0,4:00"):
            assert client.ask(bad).startswith(b"E"), bad
        # A bad checksum is nacked; the session goes on.
        client.raw(b"$g#00")
        assert client.read_byte() == b"-"
        assert client.ask(b"z0," + f"{probe:x}".encode() + b",4") == b"OK"
        # Garbage ends the session; the emulator runs on to the end.
        client.raw(b"this is not a packet")
        assert client.sock.recv(100) == b""
    finally:
        client.close()
    status, err = stub.finish()
    assert status == 0, err
    assert "sent garbage" in err


def test_a_disconnect_leaves_the_run_going(tmp_path):
    report = tmp_path / "r.json"
    stub = start_stub(tmp_path, *MACHINE, "--workload", "syscall", "--iterations", "5",
                      "--json", str(report))
    client = Client(stub.host, stub.port)
    client.ask(b"?")
    client.close()
    status, err = stub.finish()
    assert status == 0 and "disconnected" in err
    assert '"all CPUs powered off"' in report.read_text()


def test_ctrl_c_stops_the_running_target_and_kill_ends_the_run(tmp_path):
    report = tmp_path / "r.json"
    stub = start_stub(tmp_path, *MACHINE, "--workload", "syscall", "--iterations", "0",
                      "--json", str(report))
    client = Client(stub.host, stub.port)
    client.ask(b"?")
    client.raw(frame(b"c"))
    assert client.read_byte() == b"+"
    client.raw(b"\x03")
    assert re.fullmatch(rb"T02thread:[1-4];", client.reply())
    client.raw(frame(b"k"))
    status, err = stub.finish()
    client.close()
    assert status == 0, err
    assert '"stopped by the debugger"' in report.read_text()


def test_gdb_on_fault_waits_then_reports_the_fault(tmp_path):
    stub = start_stub(tmp_path, *MACHINE, "--add", str(ASM / "bad_unmapped.S"),
                      "--workload", "bad_load", gdb="--gdb-on-fault")
    assert "guest fault" in stub.stderr_path.read_text()
    client = Client(stub.host, stub.port)
    stop = client.ask(b"?")
    assert re.fullmatch(rb"T0bthread:[1-4];", stop)
    client.ask(b"Hg" + stop[len(b"T0bthread:"):-1])
    assert _reg(client, "FAR_EL1") == 0x7F00_0000_0123 + 0x10
    assert client.ask(b"c") == b"X0b"
    client.close()
    status, err = stub.finish()
    assert status != 0 and "fault" in err


@pytest.mark.parametrize("address", ["0.0.0.0:0", "192.0.2.1:1234"])
def test_another_address_is_refused_unless_asked(address):
    result = subprocess.run([sys.executable, "-m", "emu", "run", "--gdb", address],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "--gdb-allow-remote" in result.stderr and result.stderr.count("\n") == 1


def test_storm_takes_gdb_too(tmp_path):
    stub = start_stub(tmp_path, "--nodes", "2", "--cpus-per-node", "2", "--flips", "20",
                      command="storm")
    client = Client(stub.host, stub.port)
    assert client.ask(b"?") == b"T05thread:1;"
    node = bytes.fromhex(client.ask(b"qRcmd," + b"node".hex().encode()).decode()).decode()
    assert "CPU 0: node 0" in node
    assert client.ask(b"D") == b"OK"
    client.close()
    status, err = stub.finish()
    assert status == 0, err
