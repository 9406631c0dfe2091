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
#include <string.h>


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
            a->recent[*a->recent_pos % ACCT_RECENT] = address;
            (*a->recent_pos)++;
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
    a->recent[*a->recent_pos % ACCT_RECENT] = address;
    (*a->recent_pos)++;
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

/* Register ids as Python passes them in acct_t.regid (accounting.REGIDS). */
enum { R_PC, R_PSTATE, R_SP, R_SP_EL0, R_SP_EL1, R_ESR, R_ELR, R_VBAR, R_CP };

typedef struct {  /* uc_arm64_cp_reg */
    uint32_t crn, crm, op0, op1, op2;
    uint64_t val;
} cp_reg_t;

#define EXCP_SWI 2
#define EC_SVC64 0x15u
#define ESR_IL (1u << 25)

/* The 16-bit immediate of the `svc` just executed, read through the page
 * table (its page was filled to be executed) and the bank's host mapping. */
static uint32_t svc_imm16(const acct_t *a, uint64_t va) {
    int64_t i = acct_find(a, va);
    uint64_t pa, node;
    uint32_t insn;
    if (i < 0) return 0;
    pa = (a->pas[i] << 12) | (va & 0xfff);
    node = (pa - a->ram_base) / a->bank_size;
    if (pa < a->ram_base || node >= a->n_nodes) return 0;
    memcpy(&insn, (const void *)(uintptr_t)(a->bank_host[node] + (pa - a->ram_base - node * a->bank_size)), 4);
    return (insn >> 5) & 0xffff;
}

/* UC_HOOK_INTR.  For `svc` do what the PE does on a synchronous exception
 * to EL1 (see emu/hw/cpu.py take_exception, the same steps in Python):
 * SP banking, ESR/ELR/SPSR, PSTATE = EL1h with DAIF masked, PC = vector.
 * Anything else (smc, undefined instruction, brk, an svc with no vector
 * table or from inside the vectors) stops the engine for Python. */
void acct_intr(void *uc, uint32_t intno, void *user) {
    acct_t *a = (acct_t *)user;
    uint64_t pc = 0, pstate = 0, vbar = 0, sp = 0, value;
    uint32_t el;
    int from_vectors;
    cp_reg_t spsr;
    if (intno == EXCP_SWI) {
        a->reg_read(uc, a->regid[R_VBAR], &vbar);
        a->reg_read(uc, a->regid[R_PC], &pc);
        a->reg_read(uc, a->regid[R_PSTATE], &pstate);
        pstate &= 0xffffffffu;
        el = (uint32_t)(pstate >> 2) & 3;
        from_vectors = el != 0 && pc - 4 >= vbar && pc - 4 < vbar + 0x800;
        if (vbar != 0 && !from_vectors) {
            uint64_t offset = el == 0 ? 0x400 : ((pstate & 1) ? 0x200 : 0x000);
            if (el == 0 || !(pstate & 1)) {
                a->reg_read(uc, a->regid[R_SP], &sp);
                a->reg_write(uc, a->regid[R_SP_EL0], &sp);
                a->reg_read(uc, a->regid[R_SP_EL1], &sp);
                a->reg_write(uc, a->regid[R_SP], &sp);
            }
            value = (EC_SVC64 << 26) | ESR_IL | svc_imm16(a, pc - 4);
            a->reg_write(uc, a->regid[R_ESR], &value);
            a->reg_write(uc, a->regid[R_ELR], &pc);
            value = 0x3c5;
            a->reg_write(uc, a->regid[R_PSTATE], &value);
            /* SPSR_EL1 is a system register; writing one makes Unicorn
             * recompute its cached flags (the current EL) too. */
            spsr.op0 = 3; spsr.op1 = 0; spsr.crn = 4; spsr.crm = 0; spsr.op2 = 0;
            spsr.val = pstate;
            a->reg_write(uc, a->regid[R_CP], &spsr);
            value = vbar + offset;
            a->reg_write(uc, a->regid[R_PC], &value);
            a->svc_entries++;
            return;
        }
    }
    a->pending_intno = intno;
    a->emu_stop(uc);
}

static PyObject *addresses(PyObject *self, PyObject *unused) {
    (void)self; (void)unused;
    return Py_BuildValue("{s:K,s:K,s:K,s:n}",
                         "acct_block", (unsigned long long)(uintptr_t)&acct_block,
                         "acct_mem", (unsigned long long)(uintptr_t)&acct_mem,
                         "acct_intr", (unsigned long long)(uintptr_t)&acct_intr,
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
