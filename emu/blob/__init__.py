"""Kernel blob toolchain: assembly source -> object model -> linked ELF image."""
