/*
 * The QEMU -d exec log scanner at C speed (optional: emu/replay/qemu_log.py
 * has a numpy path and a line-by-line reference parser with the same result).
 *
 * scan(data, first_line, cpu, pc, size, line, other) walks whole lines of
 * `data`.  A well-formed exec record
 *
 *     Trace VCPU: [0x]HOST [CS_BASE/PC/FLAGS/CFLAGS][ SYMBOL]
 *
 * (QEMU 7.2 accel/tcg/cpu-exec.c, log_cpu_exec) goes into the cpu/pc/size/
 * line arrays, size being 4 x the CF_COUNT_MASK bits of CFLAGS (the length of
 * a block QEMU cut short, as -icount and cpu_io_recompile do; 0: not cut).
 * Every other line (in_asm blocks, "Stopped execution ...", separators, and
 * anything malformed) goes into `other` as (index within the chunk, start
 * offset, end offset), for Python to judge and, if bad, to name.  Returns
 * (records, others, records without CF_NO_GOTO_TB, lines).  The output
 * arrays are writable int64/uint64 buffers with room for one entry per line
 * (three for `other`).  count_lines(data) counts newlines.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define CF_NO_GOTO_TB 0x200
#define CF_COUNT_MASK 0x1ff /* a block cut to this many instructions (0: not cut) */

static signed char hex_table[256]; /* digit value, or -1; filled at module init */

static inline int hexval(unsigned char c) { return hex_table[c]; }

static void fill_hex_table(void) {
    int c;
    for (c = 0; c < 256; c++) hex_table[c] = -1;
    for (c = 0; c < 10; c++) hex_table['0' + c] = (signed char)c;
    for (c = 0; c < 6; c++) hex_table['a' + c] = (signed char)(10 + c); /* QEMU: lowercase */
}

/* Parse 1..`most` hex digits at *p up to `stop`; advance *p.  -1 on failure. */
static inline int hexfield(const unsigned char **p, const unsigned char *end, unsigned char stop,
                           int most, uint64_t *value) {
    const unsigned char *s = *p;
    uint64_t v = 0;
    int n = 0, d;
    while (s < end && (d = hexval(*s)) >= 0) {
        if (++n > most) return -1;
        v = (v << 4) | (uint64_t)d;
        s++;
    }
    if (n == 0 || s >= end || *s != stop) return -1;
    *p = s + 1;
    *value = v;
    return 0;
}

/* One exec record in [s, end) (end at the newline); 0 if well formed. */
static int parse_trace(const unsigned char *s, const unsigned char *end, int64_t *cpu,
                       uint64_t *pc, uint64_t *cflags) {
    uint64_t v, skip;
    int64_t c = 0;
    int digits = 0;
    if (end - s < 6 || memcmp(s, "Trace ", 6) != 0) return -1;
    s += 6;
    while (s < end && *s >= '0' && *s <= '9') {
        if (++digits > 9) return -1;
        c = c * 10 + (*s - '0');
        s++;
    }
    if (digits == 0 || end - s < 2 || s[0] != ':' || s[1] != ' ') return -1;
    s += 2;
    if (end - s >= 2 && s[0] == '0' && s[1] == 'x') s += 2;
    if (hexfield(&s, end, ' ', 16, &skip)) return -1;
    if (s >= end || *s != '[') return -1;
    s++;
    if (hexfield(&s, end, '/', 16, &skip)) return -1;
    if (hexfield(&s, end, '/', 16, &v)) return -1;
    *pc = v;
    if (hexfield(&s, end, '/', 8, &skip)) return -1;
    if (hexfield(&s, end, ']', 8, &v)) return -1;
    *cflags = v;
    if (s < end && *s != ' ') return -1;
    *cpu = c;
    return 0;
}

static PyObject *scan(PyObject *self, PyObject *args) {
    Py_buffer data, cpu_b, pc_b, size_b, line_b, other_b;
    long long first_line;
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*Lw*w*w*w*w*", &data, &first_line, &cpu_b, &pc_b, &size_b,
                          &line_b, &other_b))
        return NULL;
    {
        const unsigned char *p = (const unsigned char *)data.buf;
        const unsigned char *end = p + data.len;
        int64_t *cpu = (int64_t *)cpu_b.buf, *line = (int64_t *)line_b.buf;
        int64_t *size = (int64_t *)size_b.buf;
        int64_t *other = (int64_t *)other_b.buf;
        uint64_t *pc = (uint64_t *)pc_b.buf;
        Py_ssize_t room = cpu_b.len / 8, n = 0, n_other = 0, chained = 0, index = 0;
        if (pc_b.len / 8 < room) room = pc_b.len / 8;
        if (line_b.len / 8 < room) room = line_b.len / 8;
        if (size_b.len / 8 < room) room = size_b.len / 8;
        if (other_b.len / 24 < room) room = other_b.len / 24;
        while (p < end) {
            const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
            int64_t c;
            uint64_t v, cflags;
            if (nl == NULL) nl = end;
            if (n >= room || n_other >= room) {
                PyErr_SetString(PyExc_ValueError, "scan: output arrays too small");
                goto done;
            }
            if (parse_trace(p, nl, &c, &v, &cflags) == 0) {
                cpu[n] = c;
                pc[n] = v;
                size[n] = (int64_t)(cflags & CF_COUNT_MASK) * 4;
                line[n] = first_line + index;
                n++;
                chained += !(cflags & CF_NO_GOTO_TB);
            } else {
                other[3 * n_other] = index;
                other[3 * n_other + 1] = (int64_t)(p - (const unsigned char *)data.buf);
                other[3 * n_other + 2] = (int64_t)(nl - (const unsigned char *)data.buf);
                n_other++;
            }
            index++;
            p = nl + 1;
        }
        result = Py_BuildValue("nnnn", n, n_other, chained, index);
    }
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&cpu_b);
    PyBuffer_Release(&pc_b);
    PyBuffer_Release(&size_b);
    PyBuffer_Release(&line_b);
    PyBuffer_Release(&other_b);
    return result;
}

static PyObject *count_lines(PyObject *self, PyObject *args) {
    Py_buffer data;
    Py_ssize_t lines = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*", &data)) return NULL;
    {
        const char *p = (const char *)data.buf, *end = p + data.len;
        while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            lines++;
            p++;
        }
    }
    PyBuffer_Release(&data);
    return PyLong_FromSsize_t(lines);
}

static PyMethodDef methods[] = {
    {"count_lines", count_lines, METH_VARARGS, "Newlines in a buffer."},
    {"scan", scan, METH_VARARGS, "Scan whole lines of a QEMU exec log into record arrays."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_qemulog", "C-speed QEMU -d exec log scanner.", -1, methods,
};

PyMODINIT_FUNC PyInit__qemulog(void) {
    fill_hex_table();
    return PyModule_Create(&module);
}
