"""Builds the optional C accounting hooks; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # optional: without a compiler the emulator falls back to a Python hook
        Extension(
            "emu.hw._accel", ["emu/hw/_accel.c"], depends=["emu/hw/accel.h", "emu/hw/ldst.h"],
            optional=True,
        ),
        # the detailed cost model's caches; without it cachemodel.py simulates in Python
        Extension(
            "emu.hw._cachesim", ["emu/hw/_cachesim.c"], depends=["emu/hw/accel.h"], optional=True
        ),
        # the QEMU exec log scanner of `ktext-emu replay`; without it formats.py uses numpy
        Extension("emu.replay._qemulog", ["emu/replay/_qemulog.c"], optional=True),
    ]
)
