/*
 * The accounting state shared by the C hooks (see _accel.c and
 * emu/hw/accounting.py, which owns it and mirrors this layout in ctypes).
 *
 * The page table maps every 4 KiB virtual page the current CPU has had
 * filled to a slot (node * 2 + kind) and to its physical page, so another
 * C hook (a cache model, say) can find the PA of an instruction fetch.
 */
#ifndef KTEXT_EMU_ACCEL_H
#define KTEXT_EMU_ACCEL_H

#include <stdint.h>

/* A page-table entry as the code hook uses it: VA page + 1, physical page, node. */
typedef struct {
    uint64_t key;
    uint64_t pa_page;
    int64_t node;            /* -1: not RAM */
} acct_tcache_t;

/* The accesses of a load/store that has begun but not yet retired. */
typedef struct {
    uint64_t pc;
    uint64_t address;        /* of the first access */
    uint32_t kind;           /* enum ldst_kind; LDST_NONE when nothing is pending */
    uint32_t count;
    uint32_t stride;
    uint32_t write;
    uint32_t matched;        /* store-exclusive: the address matched the monitor */
    uint32_t rs;             /* store-exclusive pair: its status register */
} acct_pending_t;

typedef struct {
    uint64_t *counters;      /* current CPU's fetch row, indexed by slot */
    uint64_t *keys;          /* open-addressing table: VA page + 1, 0 = empty */
    uint32_t *slots;         /* slot of each key: node * 2 + kind */
    uint64_t mask;           /* table size - 1 (size is a power of two) */
    uint64_t last_block;     /* VA of the last block entered */
    uint32_t last_size;      /* its size in bytes */
    uint32_t last_slot;      /* where it was charged; UINT32_MAX none, -1 unknown */
    uint64_t unknown;        /* instructions on pages never filled (must stay 0) */
    uint64_t *data_counters; /* current CPU's data row: node * 2 + is_write */
    uint64_t ram_base;       /* PA of node 0's bank */
    uint64_t bank_size;      /* bytes per node bank */
    uint64_t n_nodes;
    uint64_t data_unknown;   /* data accesses outside RAM */
    uint64_t cached_key;     /* one-entry cache in front of the table */
    uint32_t cached_slot;
    uint32_t pad;
    uint64_t *pas;           /* physical page (PA >> 12) of each key */
    uint64_t cached_pa;
    /* Exception entry for `svc` in C (the hot path of every syscall); every
     * other exception stops the engine and is left to Python. */
    int (*reg_read)(void *uc, int regid, void *value);   /* Unicorn's C API */
    int (*reg_write)(void *uc, int regid, const void *value);
    int (*emu_stop)(void *uc);
    uint64_t *bank_host;     /* host address of each node's RAM bank */
    int32_t regid[10];       /* Unicorn register ids, see accounting.py REGIDS */
    uint32_t pending_intno;  /* an exception Python must handle, 0 for none */
    uint64_t svc_entries;    /* syscalls entered here */
    uint64_t *recent;        /* current CPU's ring of the last blocks entered (VA) */
    uint64_t *recent_pos;    /* its write position (counts up; index mod ACCT_RECENT) */
    /* Data accesses counted without a memory hook (acct_insn, ldst.h): the
     * code hook decodes each instruction, and charges the accesses of a load
     * or store when the next instruction begins, i.e. once it has retired. */
    uint64_t insn_count;     /* instructions begun since the last emu_start */
    uint64_t insn_budget;    /* stop before instruction insn_budget + 1 (Unicorn's count) */
    uint64_t insn_unknown;   /* instructions whose word could not be read (must stay 0) */
    uint64_t *monitor;       /* current CPU's exclusive monitor address, ACCT_NO_MONITOR if clear */
    acct_tcache_t *tcache;   /* direct-mapped cache of the page table */
    uint64_t tcache_mask;
    acct_pending_t pending;  /* the last load/store, until it retires */
    uint64_t code_key;       /* one-entry cache: VA page + 1 of the instructions being run */
    const uint8_t *code_host; /* host address of that page */
    int32_t xregid[32];      /* Unicorn ids of x0..x30 and sp */
    struct acct_decoded *decoded; /* direct-mapped cache of decoded loads/stores (_accel.c) */
    uint64_t decoded_mask;
    /* A cache model fed from here (emu/hw/_cachesim.c cache_data_sink): every
     * data access, with its PA and size, when set; NULL otherwise. */
    void (*data_sink)(void *user, uint64_t pa, uint32_t size, uint32_t write);
    void *data_sink_user;
    /* The same model's block hook (cache_block), called from acct_block so
     * that Unicorn dispatches one block hook, not two; NULL otherwise. */
    void (*fetch_sink)(void *uc, uint64_t address, uint32_t size, void *user);
    void *fetch_sink_user;
} acct_t;

#define ACCT_RECENT 16
#define ACCT_NO_MONITOR UINT64_MAX

static inline uint64_t acct_page_hash(uint64_t key) {
    /* Fibonacci hashing spreads the consecutive page numbers of a text range. */
    return key * 0x9E3779B97F4A7C15ull >> 17;
}

/* Index of the VA page of `address` in the table, or -1 if never filled. */
static inline int64_t acct_find(const acct_t *a, uint64_t address) {
    uint64_t key = (address >> 12) + 1;
    uint64_t i = acct_page_hash(key) & a->mask;
    for (;;) {
        uint64_t k = a->keys[i];
        if (k == key) return (int64_t)i;
        if (k == 0) return -1;
        i = (i + 1) & a->mask;
    }
}

#endif
