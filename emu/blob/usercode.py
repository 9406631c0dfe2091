"""Making an assembled file user code: its sections renamed to the user
sections the linker script places at the user VA (what ``--add-user`` does).

``gcc -S`` puts code in ``.text``, constants in ``.rodata`` (``.rodata.str1.8``,
``.rodata.cst16``...), initialised globals in ``.data`` and zeroed ones in
``.bss``.  The same bytes, symbols and relocations become ``.user.text``,
``.user.rodata``, ``.user.data`` and ``.user.bss``, so the file needs no hand
edits.  Sections the user image has no place for (kernel-only ones such as
``.init.text`` or ``__jump_table``) are refused, naming the file.
"""

from __future__ import annotations

from dataclasses import replace

from emu.blob.objfile import ObjectFile
from emu.errors import LinkError

# (input section, user section): ``name`` or ``name.*`` goes to the user
# section; the first that matches wins.
USER_SECTION_OF = (
    (".user.text", ".user.text"),  # already user code: kept as it is
    (".user.rodata", ".user.rodata"),
    (".user.data", ".user.data"),
    (".user.bss", ".user.bss"),
    (".text", ".user.text"),
    (".rodata", ".user.rodata"),
    (".data.rel.ro", ".user.rodata"),  # written only by the (static) linker
    (".data", ".user.data"),
    (".bss", ".user.bss"),
)


def user_section_name(name: str) -> str | None:
    """What ``name`` is called as user code (``.rodata.str1.8`` becomes
    ``.user.rodata.str1.8``; a user section keeps its name), or None when it
    has no place in the user image."""
    for prefix, target in USER_SECTION_OF:
        if name == prefix or name.startswith(prefix + "."):
            return target + name[len(prefix):]
    return None


def as_user_object(obj: ObjectFile) -> ObjectFile:
    """``obj`` with every allocated section renamed to its user section
    (suffixes kept, so sections stay apart with their own alignment)."""
    renames: dict[str, str] = {}
    for name, section in obj.sections.items():
        if not section.flags.alloc:
            continue  # .comment, notes, debug info: the script discards them
        target = user_section_name(name)
        if target is None:
            raise LinkError(
                f"{obj.path}: section {name} has no place in user code (--add-user takes "
                ".text, .rodata, .data and .bss and their .name suffixes); add the file with "
                "--add if it is kernel code"
            )
        renames[name] = target
    sections = {}
    for name, section in obj.sections.items():
        new = renames.get(name, name)
        sections[new] = replace(section, name=new)
    symbols = {
        key: replace(sym, section=renames.get(sym.section, sym.section))
        if sym.section is not None else sym
        for key, sym in obj.symbols.items()
    }
    return ObjectFile(obj.path, sections, symbols, set(obj.undefined))
