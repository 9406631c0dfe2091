/*
 * Exact NUMA fetch and data-access accounting at C speed.
 *
 * Unicorn calls acct_block() at the start of every translated block and,
 * when data accesses are counted, acct_insn() before every instruction.  A
 * Python callback there costs about a microsecond (platform-notes.md); these
 * cost a few nanoseconds.  Python owns the Acct struct (a ctypes.Structure with the
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
#include "ldst.h"

typedef struct { uint64_t address; uint32_t count, stride, write; } acct_run_t;

/* One entry of acct_t.decoded: decoding is a pure function of the word, and
 * the same few load/store words run again and again.  An all-zero entry is
 * already right: word 0 (UDF) decodes to LDST_NONE. */
struct acct_decoded {
    uint32_t insn;
    ldst_t ldst;
};


void acct_block(void *uc, uint64_t address, uint32_t size, void *user) {
    acct_t *a = (acct_t *)user;
    uint64_t key = (address >> 12) + 1;
    uint32_t slot;
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
            if (a->fetch_sink != NULL) a->fetch_sink(uc, address, size, a->fetch_sink_user);
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
    if (a->fetch_sink != NULL) a->fetch_sink(uc, address, size, a->fetch_sink_user);
}

/* ------------------------------------------------------------------ data
 * Data accesses are counted from the code hook, not from a memory hook: with
 * any UC_HOOK_MEM_READ/WRITE installed, Unicorn sends every load and store of
 * the guest through its slow path, which costs more than the rest of the
 * emulation.  The code hook replaces Unicorn's own instruction-count hook
 * (emu_start's count), so that Unicorn inlines it as a direct call. */

static int64_t acct_node_of_pa(const acct_t *a, uint64_t pa) {
    uint64_t node;
    if (pa < a->ram_base) return -1;
    node = (pa - a->ram_base) / a->bank_size;
    return node < a->n_nodes ? (int64_t)node : -1;
}

/* The page-table entry of `va`, through the direct-mapped cache; NULL if the
 * page was never filled.  A tagged pointer (TCR.TBI) needs nothing special:
 * Unicorn fills the TLB for the address as the instruction formed it, top
 * byte included, so the table holds the page under that address. */
static const acct_tcache_t *acct_translate(acct_t *a, uint64_t va) {
    uint64_t key = (va >> 12) + 1;
    acct_tcache_t *entry = &a->tcache[(va >> 12) & a->tcache_mask];
    int64_t i;
    if (entry->key == key) return entry;
    i = acct_find(a, va);
    if (i < 0) return NULL;
    entry->key = key;
    entry->pa_page = a->pas[i];
    entry->node = acct_node_of_pa(a, a->pas[i] << 12);
    return entry;
}

static inline void acct_count(acct_t *a, const acct_tcache_t *page, uint32_t write,
                              uint32_t count) {
    if (page == NULL || page->node < 0) a->data_unknown += count;
    else a->data_counters[page->node * 2 + write] += count;
}

/* `count` accesses `stride` bytes apart from `address`, each to its page's node. */
/* Each access of a run to the cache model, with its PA (data_sink set). */
static __attribute__((noinline)) void acct_sink(acct_t *a, uint64_t address, uint32_t count,
                                                uint32_t stride, uint32_t write) {
    uint32_t i, size = stride ? stride : 1;
    for (i = 0; i < count; i++) {
        uint64_t va = address + (uint64_t)i * stride;
        const acct_tcache_t *page = acct_translate(a, va);
        if (page == NULL) continue;  /* counted as unknown by acct_count */
        a->data_sink(a->data_sink_user, (page->pa_page << 12) | (va & 0xfff), size, write);
    }
}

static inline void acct_charge(acct_t *a, uint64_t address, uint32_t count, uint32_t stride,
                               uint32_t write) {
    const acct_tcache_t *page = &a->tcache[(address >> 12) & a->tcache_mask];
    uint32_t i;
    if (count == 0) return;
    if (a->data_sink != NULL) acct_sink(a, address, count, stride, write);
    if ((address ^ (address + (uint64_t)(count - 1) * stride)) >> 12 != 0) {  /* crosses a page */
        for (i = 0; i < count; i++) acct_count(a, acct_translate(a, address + (uint64_t)i * stride), write, 1);
        return;
    }
    if (page->key != (address >> 12) + 1) page = acct_translate(a, address);
    acct_count(a, page, write, count);
}

/* Register `n` as ldst.h numbers operands (31 = SP, LDST_NO_REG = 0). */
static uint64_t acct_xreg(acct_t *a, void *uc, unsigned n) {
    uint64_t value = 0;
    if (n != LDST_NO_REG) a->reg_read(uc, a->xregid[n], &value);
    return value;
}

/* The accesses of `p` as up to two runs; `status` is the store-exclusive
 * pair's Ws after it ran. */
static int acct_runs(const acct_pending_t *p, uint32_t status, acct_run_t runs[2]) {
    switch (p->kind) {
    case LDST_PLAIN:
    case LDST_LOAD_EXCL:
        runs[0] = (acct_run_t){p->address, p->count, p->stride, p->write};
        return 1;
    case LDST_STORE_EXCL:
        if (!p->matched) return 0;
        runs[0] = (acct_run_t){p->address, 1, 0, 0};
        runs[1] = (acct_run_t){p->address, 1, 0, 1};
        return 2;
    case LDST_STXP_X:
        if (!p->matched) return 0;
        runs[0] = (acct_run_t){p->address, 2, 8, 0};
        runs[1] = (acct_run_t){p->address, 2, 8, 1};
        return status == 0 ? 2 : 1;
    default:
        return 0;
    }
}

/* The pending load/store retired: charge it and update the monitor. */
static __attribute__((noinline)) void acct_commit(acct_t *a, void *uc) {
    acct_pending_t *p = &a->pending;
    acct_run_t runs[2];
    uint32_t status = 0;
    int n, i;
    if (p->kind == LDST_STXP_X && p->matched)
        status = (uint32_t)acct_xreg(a, uc, p->rs == 31 ? LDST_NO_REG : p->rs);
    n = acct_runs(p, status, runs);
    for (i = 0; i < n; i++) acct_charge(a, runs[i].address, runs[i].count, runs[i].stride, runs[i].write);
    if (p->kind == LDST_LOAD_EXCL) *a->monitor = p->address;
    else if (p->kind != LDST_PLAIN) *a->monitor = ACCT_NO_MONITOR;
    p->kind = LDST_NONE;
}

/* The pending record of the instruction `d` at `pc`, given the values of its
 * base and index registers. */
static void acct_begin(acct_pending_t *p, uint64_t pc, uint64_t monitor, const ldst_t *d,
                       uint64_t base, uint64_t index) {
    p->pc = pc;
    p->kind = d->kind;
    p->address = ldst_address(d, d->base_pc ? pc : base, index);
    p->count = d->count;
    p->stride = d->stride;
    p->write = d->write;
    p->rs = d->rs;
    p->matched = monitor == p->address;
}

/* The host address of the page of `address`, the instructions being run;
 * NULL (and the instruction counted as unknown) if no fill described it. */
static __attribute__((noinline)) const uint8_t *acct_code_page(acct_t *a, uint64_t address) {
    const acct_tcache_t *page = acct_translate(a, address);
    if (page == NULL || page->node < 0) {
        a->insn_unknown++;
        return NULL;
    }
    a->code_key = (address >> 12) + 1;
    a->code_host = (const uint8_t *)(uintptr_t)(a->bank_host[page->node] + (page->pa_page << 12)
                                                - a->ram_base
                                                - (uint64_t)page->node * a->bank_size);
    return a->code_host;
}

/* A load, store or monitor instruction begins: note what it will access. */
static __attribute__((noinline)) void acct_ldst(acct_t *a, void *uc, uint32_t insn,
                                                uint64_t address) {
    struct acct_decoded *entry = &a->decoded[(insn * 0x9E3779B1u >> 16) & a->decoded_mask];
    const ldst_t *d = &entry->ldst;
    if (entry->insn != insn) {
        ldst_decode(insn, &entry->ldst);
        entry->insn = insn;
    }
    if (d->kind == LDST_NONE) return;
    acct_begin(&a->pending, address, *a->monitor, d, acct_xreg(a, uc, ldst_base_register(d)),
               acct_xreg(a, uc, ldst_index_register(d)));
}

/* UC_HOOK_CODE, before every instruction: kept small, for the common case
 * of an instruction on the same page that touches no memory. */
void acct_insn(void *uc, uint64_t address, uint32_t size, void *user) {
    acct_t *a = (acct_t *)user;
    const uint8_t *host = a->code_host;
    uint32_t insn;
    (void)size;
    if (a->pending.kind == LDST_PLAIN) {  /* the previous instruction retired */
        acct_charge(a, a->pending.address, a->pending.count, a->pending.stride, a->pending.write);
        a->pending.kind = LDST_NONE;
    } else if (a->pending.kind != LDST_NONE) {
        acct_commit(a, uc);
    }
    if (++a->insn_count > a->insn_budget) {
        a->emu_stop(uc);
        return;
    }
    if ((address >> 12) + 1 != a->code_key && (host = acct_code_page(a, address)) == NULL) return;
    memcpy(&insn, host + (address & 0xfff), 4);
    /* Loads and stores (op0 x1x0), CLREX, ERET and DC ZVA; nothing else
     * touches memory or the monitor. */
    if ((insn & 0x0a000000) == 0x08000000 || (insn & 0xfffff0ff) == 0xd503305f
        || insn == 0xd69f03e0 || (insn & 0xffffffe0) == 0xd50b7420)
        acct_ldst(a, uc, insn, address);
}

/* The engine stopped at `pc`: the pending instruction retired unless it is
 * the one at `pc` (it faulted, or was never run). */
void acct_settle_data(acct_t *a, void *uc, uint64_t pc) {
    acct_pending_t *p = &a->pending;
    if (p->kind == LDST_NONE) return;
    if (p->pc != pc) acct_commit(a, uc);
    else p->kind = LDST_NONE;
}

/* For tests: the accesses `insn` at `pc` makes given x0..x30, sp in `regs`,
 * the monitor, and a store-exclusive pair's status; fills up to `max`
 * (address, is_write) pairs and returns how many there are. */
int acct_predict(uint32_t insn, uint64_t pc, const uint64_t *regs, uint64_t monitor,
                 uint32_t status, uint64_t *addresses, uint8_t *writes, int max) {
    acct_pending_t p;
    acct_run_t runs[2];
    ldst_t d;
    unsigned base = 0, index = 0;
    int n, i, total = 0;
    uint32_t k;
    if (ldst_decode(insn, &d) == LDST_NONE) return 0;
    base = ldst_base_register(&d);
    index = ldst_index_register(&d);
    acct_begin(&p, pc, monitor, &d, base == LDST_NO_REG ? 0 : regs[base],
               index == LDST_NO_REG ? 0 : regs[index]);
    n = acct_runs(&p, status, runs);
    for (i = 0; i < n; i++) {
        for (k = 0; k < runs[i].count; k++) {
            if (total < max) {
                addresses[total] = runs[i].address + (uint64_t)k * runs[i].stride;
                writes[total] = (uint8_t)runs[i].write;
            }
            total++;
        }
    }
    return total;
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

/* The nonzero counters of counters[0, count): their (index, value) pairs into
 * out (room for max_pairs), returning how many there are.  Accounting.counts
 * reads a CPU's row through it: a row is O(nodes), the nonzero counters a CPU
 * of a 1024-node machine has are a few. */
uint64_t acct_nonzero(const uint64_t *counters, uint64_t count, uint64_t *out,
                      uint64_t max_pairs) {
    uint64_t i, found = 0;
    for (i = 0; i < count; i++) {
        if (counters[i] == 0) continue;
        if (found < max_pairs) {
            out[2 * found] = i;
            out[2 * found + 1] = counters[i];
        }
        found++;
    }
    return found;
}

static PyObject *addresses(PyObject *self, PyObject *unused) {
    (void)self; (void)unused;
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K,s:n,s:n}",
                         "acct_block", (unsigned long long)(uintptr_t)&acct_block,
                         "acct_insn", (unsigned long long)(uintptr_t)&acct_insn,
                         "acct_settle_data", (unsigned long long)(uintptr_t)&acct_settle_data,
                         "acct_predict", (unsigned long long)(uintptr_t)&acct_predict,
                         "acct_intr", (unsigned long long)(uintptr_t)&acct_intr,
                         "acct_nonzero", (unsigned long long)(uintptr_t)&acct_nonzero,
                         "struct_size", (Py_ssize_t)sizeof(acct_t),
                         "decoded_size", (Py_ssize_t)sizeof(struct acct_decoded));
}

static PyMethodDef methods[] = {
    {"addresses", addresses, METH_NOARGS, "Addresses of the C hooks and sizeof(acct_t)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_accel", "C-speed accounting hooks for Unicorn.", -1, methods,
};

PyMODINIT_FUNC PyInit__accel(void) { return PyModule_Create(&module); }
