"""Measurement of a real arm64 kernel's syscall footprint under QEMU (issue 12).

measure.py runs it end to end; analyse.py turns QEMU exec logs into figures;
initramfs.py packs the guest's /init.
"""
