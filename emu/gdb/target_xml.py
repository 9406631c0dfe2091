"""The target description GDB reads with ``qXfer:features:read:target.xml``:
the AArch64 core and FP registers under the feature names GDB's aarch64
target requires (org.gnu.gdb.aarch64.core / .fpu, registers named as in
GDB's own features/aarch64-core.xml and aarch64-fpu.xml), then the EL1
system registers a kernel engineer reads, in a feature of our own.

``REGISTERS`` is the register numbering every packet (g/G/p/P) uses.
"""

from __future__ import annotations

from dataclasses import dataclass

CORE_FEATURE = "org.gnu.gdb.aarch64.core"
FPU_FEATURE = "org.gnu.gdb.aarch64.fpu"
SYSREG_FEATURE = "org.ktext-emu.aarch64.sysregs"

SYSREG_NAMES = ("CurrentEL", "SCTLR_EL1", "TCR_EL1", "TTBR0_EL1", "TTBR1_EL1", "MAIR_EL1",
                "VBAR_EL1", "ESR_EL1", "FAR_EL1", "ELR_EL1", "SPSR_EL1")


@dataclass(frozen=True)
class Register:
    name: str
    bits: int
    feature: str
    type: str

    @property
    def size(self) -> int:
        return self.bits // 8


def _registers() -> tuple[Register, ...]:
    regs = [Register(f"x{n}", 64, CORE_FEATURE, "uint64") for n in range(31)]
    regs += [Register("sp", 64, CORE_FEATURE, "data_ptr"),
             Register("pc", 64, CORE_FEATURE, "code_ptr"),
             Register("cpsr", 32, CORE_FEATURE, "cpsr_flags")]
    regs += [Register(f"v{n}", 128, FPU_FEATURE, "aarch64v") for n in range(32)]
    regs += [Register("fpsr", 32, FPU_FEATURE, "uint32"),
             Register("fpcr", 32, FPU_FEATURE, "uint32")]
    regs += [Register(name, 64, SYSREG_FEATURE, "uint64") for name in SYSREG_NAMES]
    return tuple(regs)


REGISTERS = _registers()
REGNUM = {reg.name: index for index, reg in enumerate(REGISTERS)}

_CPSR_FLAGS = """  <flags id="cpsr_flags" size="4">
    <field name="SP" start="0" end="0"/>
    <field name="EL" start="2" end="3"/>
    <field name="nRW" start="4" end="4"/>
    <field name="F" start="6" end="6"/>
    <field name="I" start="7" end="7"/>
    <field name="A" start="8" end="8"/>
    <field name="D" start="9" end="9"/>
    <field name="IL" start="20" end="20"/>
    <field name="SS" start="21" end="21"/>
    <field name="V" start="28" end="28"/>
    <field name="C" start="29" end="29"/>
    <field name="Z" start="30" end="30"/>
    <field name="N" start="31" end="31"/>
  </flags>
"""

_VECTOR_TYPES = """  <vector id="v2d" type="ieee_double" count="2"/>
  <vector id="v2u" type="uint64" count="2"/>
  <vector id="v4f" type="ieee_single" count="4"/>
  <vector id="v4u" type="uint32" count="4"/>
  <vector id="v8u" type="uint16" count="8"/>
  <vector id="v16u" type="uint8" count="16"/>
  <union id="aarch64v">
    <field name="d" type="v2d"/>
    <field name="ud" type="v2u"/>
    <field name="s" type="v4f"/>
    <field name="us" type="v4u"/>
    <field name="h" type="v8u"/>
    <field name="b" type="v16u"/>
    <field name="q" type="uint128"/>
  </union>
"""


def _feature(name: str, preamble: str) -> str:
    lines = [f'<feature name="{name}">\n', preamble]
    for regnum, reg in enumerate(REGISTERS):
        if reg.feature == name:
            lines.append(f'  <reg name="{reg.name}" bitsize="{reg.bits}" type="{reg.type}" '
                         f'regnum="{regnum}"/>\n')
    lines.append("</feature>\n")
    return "".join(lines)


def target_xml() -> str:
    return ('<?xml version="1.0"?>\n<!DOCTYPE target SYSTEM "gdb-target.dtd">\n<target>\n'
            "<architecture>aarch64</architecture>\n"
            + _feature(CORE_FEATURE, _CPSR_FLAGS)
            + _feature(FPU_FEATURE, _VECTOR_TYPES)
            + _feature(SYSREG_FEATURE, "")
            + "</target>\n")


def xfer_slice(document: bytes, offset: int, length: int) -> bytes:
    """A ``qXfer`` reply: ``m`` and a chunk while more follows, ``l`` and the last."""
    chunk = document[offset : offset + length]
    return (b"l" if offset + length >= len(document) else b"m") + chunk
