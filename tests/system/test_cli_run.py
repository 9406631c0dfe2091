"""`ktext-emu run` end to end: the default command, the JSON report's shape,
and one clear line with a non-zero status for each kind of bad input."""

from __future__ import annotations

import json

import pytest

from emu.cli import main
from emu.errors import BlobError, ConfigError, UsageError

RUN_KEYS = {"machine", "kernel", "ktext", "cpus", "nodes", "checks"}
MACHINE_KEYS = {"nodes", "cpus_per_node", "granule", "va_bits", "levels"}
KERNEL_KEYS = {"kimage_vaddr", "stext", "etext", "end_rodata"}
CPU_KEYS = {"cpu", "node", "ttbr1", "instructions", "kernel_fetches_by_node", "fetches_by_node"}
NODE_KEYS = {"node", "pgd", "text_pa"}
CHECK_KEYS = {"copies_identical", "roots_differ_only_in_kernel_slots", "ttbr1_matches_node"}


def test_default_run_reports_off_and_on(tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["run", "--iterations", "20", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ktext off" in printed and "ktext on" in printed
    report = json.loads(out.read_text())
    assert [run["ktext"] for run in report["runs"]] == [False, True]
    for run in report["runs"]:
        assert run.keys() >= RUN_KEYS
        assert run["machine"].keys() >= MACHINE_KEYS
        assert run["kernel"].keys() >= KERNEL_KEYS
        assert run["checks"].keys() == CHECK_KEYS
        assert all(run["checks"].values())
        for cpu in run["cpus"]:
            assert cpu.keys() >= CPU_KEYS
            assert isinstance(cpu["instructions"], int)
            assert cpu["ttbr1"].startswith("0x")
            # report v2: a sparse object of the nonzero counts, keyed by node
            assert all(0 <= int(node) < run["machine"]["nodes"] and count > 0
                       for node, count in cpu["kernel_fetches_by_node"].items())
        for node in run["nodes"]:
            assert node.keys() >= NODE_KEYS
            assert node["pgd"].startswith("0x") and node["text_pa"].startswith("0x")
        for key in KERNEL_KEYS:
            assert run["kernel"][key].startswith("0x")
    on = report["runs"][1]
    for cpu in on["cpus"]:
        assert list(cpu["kernel_fetches_by_node"]) == [str(cpu["node"])]


def test_cmdline_switch_selects_one_run(tmp_path):
    out = tmp_path / "r.json"
    assert main(["run", "--cmdline", "ktext=on", "--iterations", "5", "--quiet",
                 "--json", str(out)]) == 0
    assert [run["ktext"] for run in json.loads(out.read_text())["runs"]] == [True]


def test_machine_file(tmp_path, capsys):
    machine = tmp_path / "box.toml"
    machine.write_text('[machine]\nname = "box"\nnodes = 3\ncpus_per_node = 1\n'
                       'distances = [[10, 21, 31], [21, 10, 21], [31, 21, 10]]\n')
    assert main(["run", "--machine", str(machine), "--iterations", "5", "--ktext", "on"]) == 0
    assert "3 nodes x 1 CPUs" in capsys.readouterr().out


def test_malformed_ktext_warns_and_boots_with_the_default(tmp_path, capsys):
    # Linux: do_early_param() warns, kstrtobool() left the flag at its default (off).
    out = tmp_path / "r.json"
    assert main(["run", "--cmdline", "ktext=maybe", "--iterations", "5",
                 "--json", str(out)]) == 0
    assert "kernel warning: Malformed early option 'ktext'" in capsys.readouterr().out
    runs = json.loads(out.read_text())["runs"]
    assert [run["ktext"] for run in runs] == [False]
    assert runs[0]["kernel_warnings"] == ["Malformed early option 'ktext'"]


@pytest.mark.parametrize(("granule", "va_bits", "needle", "key"), [
    ("16k", "48", "pre-series (v6.7) layout", "series_kimage_vaddr_overflows"),
    ("64k", "42", "the modules area overlaps the linear map", "series_modules_overlap_linear_map"),
])
def test_run_says_when_the_series_layout_is_broken(tmp_path, capsys, granule, va_bits,
                                                   needle, key):
    out = tmp_path / "r.json"
    assert main(["run", "--granule", granule, "--va-bits", va_bits, "--ktext", "off",
                 "--iterations", "5", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"layout {granule}-{va_bits}:" in printed and needle in printed
    layout = json.loads(out.read_text())["runs"][0]["layout"]
    assert layout[key] is True and layout["series_problems"]


BAD_INPUTS = [
    (["run", "--machine", "no-such-preset"], ConfigError.exit_status, "no-such-preset"),
    (["run", "--nodes", "0"], ConfigError.exit_status, "nodes"),
    (["run", "--cpus-per-node", "-2"], ConfigError.exit_status, "cpus-per-node"),
    (["run", "--ram-mib", "0"], ConfigError.exit_status, "RAM"),
    (["run", "--nodes", "2", "--cpus-per-node", "4096"], ConfigError.exit_status, "CPUs"),
    (["run", "--granule", "8k"], UsageError.exit_status, "granule"),
    (["run", "--va-bits", "52"], ConfigError.exit_status, "va_bits"),
    (["run", "--workload", "nothing"], ConfigError.exit_status, "unknown workload"),
    (["run", "--max-instructions", "0"], UsageError.exit_status, "positive"),
]


@pytest.mark.parametrize("argv,status,needle", BAD_INPUTS, ids=[" ".join(a[1:]) for a, _, _ in BAD_INPUTS])
def test_bad_input_gets_one_line_and_a_status(argv, status, needle, capsys):
    assert main(argv) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ktext-emu: error: ")
    assert needle.lower() in err[0].lower()


def test_malformed_machine_file(tmp_path, capsys):
    machine = tmp_path / "bad.toml"
    machine.write_text("[machine\nnodes = 2\n")
    assert main(["run", "--machine", str(machine)]) == ConfigError.exit_status
    assert "bad.toml" in capsys.readouterr().err


def test_kernel_without_required_symbols(tmp_path, capsys):
    source = tmp_path / "tiny.S"
    source.write_text("\t.section .head.text, \"ax\"\n\t.globl _text\n_text:\n\tnop\n")
    elf = tmp_path / "tiny.elf"
    assert main(["build", str(source), "-o", str(elf)]) == 0
    assert elf.exists()
    capsys.readouterr()
    status = main(["run", "--kernel", str(elf)])
    assert status == BlobError.exit_status
    assert "missing symbol" in capsys.readouterr().err
