/*
 * Exact NUMA fetch and data-access accounting at C speed.
 *
 * Unicorn calls acct_block() at the start of every translated block and
 * acct_mem() on every data access when those hooks are installed.  A Python
 * callback there costs about a microsecond (platform-notes.md); these cost a
 * few nanoseconds.  Python owns the Acct struct (a ctypes.Structure with the
 * same layout, see emu/hw/accounting.py) and fills its page table from the
 * TLB-fill hook, which already knows the physical node behind every virtual
 * page a CPU can execute from.
 *
 * The module exposes only the addresses of these functions; it has no Python
 * API of its own so that the layout stays in one place (accounting.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>


#include "accel.h"


void acct_block(void *uc, uint64_t address, uint32_t size, void *user) {
    acct_t *a = (acct_t *)user;
    uint64_t key = (address >> 12) + 1;
    uint32_t slot;
    (void)uc;
    if (key == a->cached_key) {
        slot = a->cached_slot;
    } else {
        int64_t i = acct_find(a, address);
        if (i < 0) {
            a->unknown += size >> 2;
            a->last_block = address;
            a->last_size = size;
            a->last_slot = UINT32_MAX - 1; /* "unknown", see settle() */
            return;
        }
        slot = a->slots[i];
        a->cached_key = key;
        a->cached_slot = slot;
        a->cached_pa = a->pas[i];
    }
    a->counters[slot] += size >> 2;
    a->last_block = address;
    a->last_size = size;
    a->last_slot = slot;
}

/* UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE: in virtual-TLB mode Unicorn reports
 * the physical address, so the node is plain arithmetic. */
void acct_mem(void *uc, int type, uint64_t address, int size, int64_t value, void *user) {
    acct_t *a = (acct_t *)user;
    uint64_t node;
    (void)uc; (void)size; (void)value;
    if (address < a->ram_base) {
        a->data_unknown++;
        return;
    }
    node = (address - a->ram_base) / a->bank_size;
    if (node >= a->n_nodes) {
        a->data_unknown++;
        return;
    }
    /* UC_MEM_WRITE is 17, UC_MEM_READ 16 */
    a->data_counters[node * 2 + (type == 17)]++;
}

static PyObject *addresses(PyObject *self, PyObject *unused) {
    (void)self; (void)unused;
    return Py_BuildValue("{s:K,s:K,s:n}",
                         "acct_block", (unsigned long long)(uintptr_t)&acct_block,
                         "acct_mem", (unsigned long long)(uintptr_t)&acct_mem,
                         "struct_size", (Py_ssize_t)sizeof(acct_t));
}

static PyMethodDef methods[] = {
    {"addresses", addresses, METH_NOARGS, "Addresses of the C hooks and sizeof(acct_t)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_accel", "C-speed accounting hooks for Unicorn.", -1, methods,
};

PyMODINIT_FUNC PyInit__accel(void) { return PyModule_Create(&module); }
