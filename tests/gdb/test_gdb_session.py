"""gdb-multiarch drives the stub: a breakpoint on a syscall handler hit by
CPU 3, ``monitor node``, TTBR1_EL1 against the report, a single step, a
watchpoint on a static key another CPU flips, ``monitor copies`` before and
after, detach.  On 1, 2 and 4 nodes (4 CPUs each time, so CPU 3 exists
everywhere: 4x1, 2x2, 1x4) and two layouts.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from stub_process import start_stub

GDB = shutil.which("gdb-multiarch")
pytestmark = pytest.mark.skipif(GDB is None, reason="gdb-multiarch is not installed")

LAYOUTS = {"4k/48": ("4k", "48"), "64k/42": ("64k", "42")}
CPU = 3  # thread 4


def _script(stub) -> str:
    # always-inserted: gdb keeps Z0 in while stopped, so `monitor copies`
    # below looks at the text with the breakpoint set.
    return f"""set pagination off
set confirm off
set breakpoint always-inserted on
file {stub.elf}
target remote {stub.host}:{stub.port}
echo @COPIES-BEFORE\\n
monitor copies static_key_storm_site
break *static_key_probe thread {CPU + 1}
continue
echo @BP-COPIES\\n
monitor copies static_key_probe
echo @THREAD\\n
p $_thread
echo @NODE\\n
monitor node
echo @TLB\\n
monitor tlb
echo @WALK\\n
monitor walk static_key_probe
echo @TTBR1\\n
p/x $TTBR1_EL1
echo @PC\\n
p/x $pc
stepi
echo @STEPPED\\n
p/x $pc
delete
watch *(int *)&storm_key
continue
echo @WATCH-THREAD\\n
p $_thread
delete
break *static_key_probe thread {CPU + 1}
continue
delete
echo @COPIES-AFTER\\n
monitor copies static_key_storm_site
echo @KTEXT\\n
monitor ktext
detach
echo @END\\n
"""


def _section(output: str, name: str) -> str:
    start = output.index(f"@{name}\n") + len(name) + 2
    end = output.find("\n@", start)
    return output[start : end if end >= 0 else len(output)]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("nodes", [1, 2, 4])
def test_scripted_session(tmp_path, nodes, layout):
    granule, va_bits = LAYOUTS[layout]
    cpus_per_node = 4 // nodes
    report_path = tmp_path / "report.json"
    stub = start_stub(tmp_path, "--ktext", "on", "--nodes", str(nodes), "--cpus-per-node",
                      str(cpus_per_node), "--granule", granule, "--va-bits", va_bits,
                      "--workload", "key_storm", "--iterations", "50",
                      "--json", str(report_path))
    script = tmp_path / "session.gdb"
    script.write_text(_script(stub))
    gdb = subprocess.run([GDB, "-batch", "-nx", "-x", str(script)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=240)
    status, emu_err = stub.finish()
    output = gdb.stdout
    assert "@END" in output, output + emu_err
    assert status == 0, emu_err
    node = CPU // cpus_per_node
    copy = "node 0's image" if node == 0 else f"node {node}'s copy"

    # The breakpoint hit on CPU 3, and it changed no copy's bytes.
    assert f"Thread {CPU + 1} hit Breakpoint 1" in output
    assert re.search(r"\$\d+ = (\d+)", _section(output, "THREAD"))[1] == str(CPU + 1)
    bp_copies = _section(output, "BP-COPIES")
    assert bp_copies.count("mov x0, #0") == nodes, bp_copies
    # monitor node: CPU 3's node and the copy its pc is fetched from.
    node_text = _section(output, "NODE")
    assert f"CPU {CPU}: node {node}" in node_text
    assert f"on node {node}, from {copy}" in node_text and "local copy" in node_text
    # Its TLB holds the page it is running from; the walk ends in its copy.
    tlb = _section(output, "TLB")
    assert f"CPU {CPU} (node {node}):" in tlb and re.search(r"-> 0x[0-9a-f]+ node \d", tlb)
    assert re.search(rf"-> PA 0x[0-9a-f]+ \(node {node}\)", _section(output, "WALK"))
    # TTBR1_EL1 as gdb reads it is the report's, and node's root.
    report = json.loads(report_path.read_text())["runs"][0]
    ttbr1 = int(re.search(r"= (0x[0-9a-f]+)", _section(output, "TTBR1"))[1], 16)
    assert ttbr1 == int(report["cpus"][CPU]["ttbr1"], 16)
    assert ttbr1 & ~0xFFFF_0000_0000_0001 == int(report["nodes"][node]["pgd"], 16)
    # stepi ran exactly one instruction.
    pc = int(re.search(r"= (0x[0-9a-f]+)", _section(output, "PC"))[1], 16)
    stepped = int(re.search(r"= (0x[0-9a-f]+)", _section(output, "STEPPED"))[1], 16)
    assert stepped == pc + 4
    # The watchpoint fired in a flipping (even) CPU, old and new values shown.
    assert re.search(r"Thread \d+ hit Hardware watchpoint 2: \*\(int \*\)&storm_key\s+"
                     r"Old value = 0\s+New value = 1", output), output
    watcher = int(re.search(r"\$\d+ = (\d+)", _section(output, "WATCH-THREAD"))[1]) - 1
    assert watcher % 2 == 0
    # Copies before and after the flips: identical on every node each time.
    for name in ("COPIES-BEFORE", "COPIES-AFTER"):
        text = _section(output, name)
        assert f"{nodes} cop" in text
        assert nodes == 1 or "identical" in text, text
    assert "nop" in _section(output, "COPIES-BEFORE")
    assert "replication: on" in _section(output, "KTEXT") or nodes == 1
    assert "[Inferior 1 (Remote target) detached]" in output
    assert "session ended: detached" in emu_err
    assert report["stop_reason"] == "all CPUs powered off"


def test_gdb_on_fault_opens_the_faulted_machine(tmp_path):
    """A guest load from unmapped memory: GDB attaches after the fault, sees
    the faulting CPU stopped with SIGSEGV and FAR_EL1 the address."""
    asm = Path(__file__).parents[1] / "system" / "asm" / "bad_unmapped.S"
    stub = start_stub(tmp_path, "--ktext", "on", "--nodes", "2", "--cpus-per-node", "2",
                      "--add", str(asm), "--workload", "bad_load", gdb="--gdb-on-fault")
    script = tmp_path / "fault.gdb"
    script.write_text(f"""set pagination off
set confirm off
file {stub.elf}
target remote {stub.host}:{stub.port}
echo @FAR\\n
p/x $FAR_EL1
echo @NODE\\n
monitor node
continue
echo @END\\n
""")
    gdb = subprocess.run([GDB, "-batch", "-nx", "-x", str(script)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=240)
    status, emu_err = stub.finish()
    output = gdb.stdout
    assert "SIGSEGV" in output, output
    assert int(re.search(r"= (0x[0-9a-f]+)", _section(output, "FAR"))[1], 16) == 0x7F00_0000_0133
    assert re.search(r"CPU \d: node \d", _section(output, "NODE"))
    assert "Program terminated with signal SIGSEGV" in output
    assert status != 0 and "fault" in emu_err
