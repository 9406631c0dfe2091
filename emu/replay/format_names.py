"""The names of the trace formats ``replay`` reads, apart from the readers
(which need numpy) so the command line can offer them without loading it."""

FORMAT_QEMU = "qemu-exec"
FORMAT_PERF = "perf-script"
FORMATS = (FORMAT_QEMU, FORMAT_PERF)
