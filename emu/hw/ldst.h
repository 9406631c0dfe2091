/*
 * The data accesses of one A64 instruction, as Unicorn 2.1.4 performs them.
 *
 * Unicorn's translator (QEMU 5.0, target/arm/translate-a64.c, disas_ldst_*)
 * turns a load or store into one memory operation per tcg_gen_qemu_ld/st it
 * emits, and a UC_HOOK_MEM_READ/WRITE hook would see each of them once, at
 * its own address.  This header says, for an instruction word, how many such
 * operations there are, of which kind, at which addresses relative to which
 * registers, so that the accounting can count them without a memory hook
 * (a memory hook sends every load and store of the guest down Unicorn's slow
 * path, which costs more than the rest of the emulation).
 *
 * The CPU is Unicorn's default Cortex-A72 (ARMv8.0): LSE atomics, LDAPR,
 * pointer authentication, MTE and SVE are unallocated there and make no
 * access.  Data is little-endian.  The rules that are QEMU's rather than the
 * architecture's:
 *   - a 128-bit FP/SIMD register moves as two 64-bit accesses;
 *   - LD1/ST1 (multiple structures) move 64 bits at a time, LD2-LD4/ST2-ST4
 *     one element at a time;
 *   - STXR/STLXR and STXP of two W registers read then write their location
 *     when the address matches the exclusive monitor, whatever the value
 *     found; STXP of two X registers reads both doublewords and writes them
 *     only if it succeeds; neither touches memory when the address differs;
 *   - LDXR sets the monitor to its address; STXR, CLREX and ERET clear it.
 * DC ZVA is counted as one write of its block (QEMU zeroes the block directly
 * when its page is in the TLB, with no hookable access).
 */
#ifndef KTEXT_EMU_LDST_H
#define KTEXT_EMU_LDST_H

#include <stdint.h>

enum ldst_kind {
    LDST_NONE = 0,   /* no data access, no monitor effect */
    LDST_PLAIN,      /* `count` accesses, `stride` bytes apart */
    LDST_LOAD_EXCL,  /* reads, then the monitor holds the address */
    LDST_STORE_EXCL, /* if monitor == address: a read and a write; monitor cleared */
    LDST_STXP_X,     /* if monitor == address: two reads, and two writes if Ws == 0 */
    LDST_CLEAR_EXCL, /* CLREX, ERET: monitor cleared */
};

#define LDST_NO_REG 32  /* rm: no index register */
#define LDST_ZVA_BLOCK 64u  /* Cortex-A72 DCZID_EL0.BS = 4 words * 2^4 */

typedef struct {
    uint8_t kind;     /* enum ldst_kind */
    uint8_t write;    /* LDST_PLAIN: stores */
    uint8_t rn;       /* base register; 31 is SP (XZR for DC ZVA) */
    uint8_t rm;       /* index register, 31 is XZR; LDST_NO_REG for none */
    uint8_t rs;       /* status register of a store-exclusive */
    uint8_t extend;   /* index extend option (UXTW 2, LSL 3, SXTW 6, SXTX 7) */
    uint8_t shift;    /* index shift */
    uint8_t base_pc;  /* literal: the base is the instruction's address */
    uint8_t zva;      /* DC ZVA: base register is Xt and is aligned to its block */
    uint32_t count;   /* accesses */
    uint32_t stride;  /* bytes between consecutive accesses */
    int64_t offset;   /* added to the base before the first access (0 if post-indexed) */
} ldst_t;

static inline int64_t ldst_sext(uint32_t value, unsigned bits) {
    return (int64_t)((uint64_t)value << (64 - bits)) >> (64 - bits);
}

static inline void ldst_plain(ldst_t *d, unsigned write, unsigned count, unsigned stride) {
    d->kind = LDST_PLAIN;
    d->write = (uint8_t)write;
    d->count = count;
    d->stride = stride;
}

/* FP/SIMD register of 2^size bytes: one access, or two 64-bit ones for Q. */
static inline void ldst_fp(ldst_t *d, unsigned write, unsigned size) {
    if (size == 4) ldst_plain(d, write, 2, 8);
    else ldst_plain(d, write, 1, 1u << size);
}

static inline void ldst_exclusive(uint32_t insn, ldst_t *d) {
    unsigned size = insn >> 30;
    unsigned op = ((insn >> 21) & 7) * 2 | ((insn >> 15) & 1);  /* o2:L:o1:o0 */
    switch (op) {
    case 0x0: case 0x1:  /* STXR, STLXR */
        d->kind = LDST_STORE_EXCL;
        return;
    case 0x4: case 0x5:  /* LDXR, LDAXR */
        d->kind = LDST_LOAD_EXCL;
        d->count = 1;
        return;
    case 0x9:            /* STLR (STLLR, 0x8, needs FEAT_LOR) */
        ldst_plain(d, 1, 1, 0);
        return;
    case 0xd:            /* LDAR (LDLAR, 0xc, needs FEAT_LOR) */
        ldst_plain(d, 0, 1, 0);
        return;
    case 0x2: case 0x3:  /* STXP, STLXP (CASP needs FEAT_LSE) */
        if (size & 2) d->kind = size == 3 ? LDST_STXP_X : LDST_STORE_EXCL;
        return;
    case 0x6: case 0x7:  /* LDXP, LDAXP: a W pair is one 64-bit read */
        if (size & 2) {
            d->kind = LDST_LOAD_EXCL;
            d->count = size == 3 ? 2 : 1;
            d->stride = 8;
        }
        return;
    default:             /* CAS family: FEAT_LSE */
        return;
    }
}

static inline void ldst_literal(uint32_t insn, ldst_t *d) {
    unsigned opc = insn >> 30;
    d->base_pc = 1;
    d->offset = ldst_sext((insn >> 5) & 0x7ffff, 19) * 4;
    if (insn & (1u << 26)) {
        if (opc != 3) ldst_fp(d, 0, 2 + opc);
    } else if (opc != 3) {  /* opc 3 is PRFM */
        ldst_plain(d, 0, 1, 0);
    }
}

static inline void ldst_pair(uint32_t insn, ldst_t *d) {
    unsigned opc = insn >> 30, index = (insn >> 23) & 3;
    unsigned vector = (insn >> 26) & 1, load = (insn >> 22) & 1, size;
    if (opc == 3) return;
    if (vector) {
        size = 2 + opc;
    } else {
        size = 2 + (opc >> 1);
        if ((opc & 1) && (!load || index == 0)) return;  /* LDPSW only, never non-temporal */
    }
    d->offset = index == 1 ? 0 : ldst_sext((insn >> 15) & 0x7f, 7) * ((int64_t)1 << size);
    if (vector && size == 4) ldst_plain(d, !load, 4, 8);
    else ldst_plain(d, !load, 2, 1u << size);
}

static inline void ldst_register(uint32_t insn, ldst_t *d) {
    unsigned size = insn >> 30, opc = (insn >> 22) & 3, vector = (insn >> 26) & 1;
    unsigned unsigned_offset = (insn >> 24) & 1, write;
    if (!unsigned_offset && (insn & (1u << 21))) {
        if (((insn >> 10) & 3) != 2) return;        /* LSE atomics, PAC loads */
        if (!((insn >> 14) & 1)) return;            /* option<1> must be 1 */
        d->rm = (insn >> 16) & 31;
        d->extend = (insn >> 13) & 7;
    }
    if (vector) {
        size |= (opc & 2) << 1;
        if (size > 4) return;
        write = !(opc & 1);
    } else {
        if (size == 3 && opc == 2) return;          /* PRFM, PRFUM */
        if (opc == 3 && size > 1) return;
        write = opc == 0;
    }
    if (unsigned_offset) {
        d->offset = (int64_t)((insn >> 10) & 0xfff) << size;
    } else if (d->rm != LDST_NO_REG) {
        d->shift = (insn >> 12) & 1 ? size : 0;
    } else {
        unsigned idx = (insn >> 10) & 3;
        if (idx == 2 && vector) return;             /* no unprivileged FP/SIMD form */
        d->offset = idx == 1 ? 0 : ldst_sext((insn >> 12) & 0x1ff, 9);
    }
    if (vector) ldst_fp(d, write, size);
    else ldst_plain(d, write, 1, 0);
}

static inline void ldst_multiple(uint32_t insn, ldst_t *d) {
    static const uint8_t rpt[16] = {1, 0, 4, 0, 1, 0, 3, 1, 1, 0, 2};
    static const uint8_t selem[16] = {4, 0, 1, 0, 3, 0, 1, 1, 2, 0, 1};
    unsigned opcode = (insn >> 12) & 15, size = (insn >> 10) & 3, q = (insn >> 30) & 1;
    unsigned elements;
    if ((insn >> 31) || ((insn >> 21) & 1)) return;
    if (!((insn >> 23) & 1) && ((insn >> 16) & 31)) return;
    if (!rpt[opcode]) return;
    if (size == 3 && !q && selem[opcode] != 1) return;
    if (selem[opcode] == 1) size = 3;  /* LD1/ST1 move 64 bits at a time */
    elements = (q ? 16u : 8u) >> size;
    ldst_plain(d, !((insn >> 22) & 1), rpt[opcode] * elements * selem[opcode], 1u << size);
}

static inline void ldst_single(uint32_t insn, ldst_t *d) {
    unsigned size = (insn >> 10) & 3, s = (insn >> 12) & 1, opc = (insn >> 13) & 7;
    unsigned load = (insn >> 22) & 1, scale = opc >> 1;
    unsigned selem = ((opc & 1) << 1 | ((insn >> 21) & 1)) + 1;
    if (insn >> 31) return;
    if (!((insn >> 23) & 1) && ((insn >> 16) & 31)) return;
    switch (scale) {
    case 3:  /* LD1R-LD4R */
        if (!load || s) return;
        scale = size;
        break;
    case 1:
        if (size & 1) return;
        break;
    case 2:
        if (size & 2) return;
        if (size & 1) {
            if (s) return;
            scale = 3;
        }
        break;
    default:
        break;
    }
    ldst_plain(d, !load, selem, 1u << scale);
}

/* Decode `insn`; returns its kind (LDST_NONE: nothing to count). */
static inline int ldst_decode(uint32_t insn, ldst_t *d) {
    d->kind = LDST_NONE;
    d->write = 0;
    d->rn = (insn >> 5) & 31;
    d->rm = LDST_NO_REG;
    d->rs = (insn >> 16) & 31;
    d->extend = 3;
    d->shift = 0;
    d->base_pc = 0;
    d->zva = 0;
    d->count = 0;
    d->stride = 0;
    d->offset = 0;
    if ((insn & 0x0a000000) != 0x08000000) {
        if ((insn & 0xfffff0ff) == 0xd503305f || insn == 0xd69f03e0) {
            d->kind = LDST_CLEAR_EXCL;              /* CLREX, ERET */
        } else if ((insn & 0xffffffe0) == 0xd50b7420) {
            d->rn = insn & 31;                      /* DC ZVA, Xt */
            d->zva = 1;
            ldst_plain(d, 1, 1, 0);
        }
        return d->kind;
    }
    switch ((insn >> 24) & 0x3f) {
    case 0x08: ldst_exclusive(insn, d); break;
    case 0x18: case 0x1c: ldst_literal(insn, d); break;
    case 0x28: case 0x29: case 0x2c: case 0x2d: ldst_pair(insn, d); break;
    case 0x38: case 0x39: case 0x3c: case 0x3d: ldst_register(insn, d); break;
    case 0x0c: ldst_multiple(insn, d); break;
    case 0x0d: ldst_single(insn, d); break;
    default: break;  /* LDAPR/STLR unscaled (FEAT_LRCPC2), MTE: unallocated */
    }
    return d->kind;
}

/* Register operands as x0..x30, 31 = SP, or LDST_NO_REG for none or XZR
 * (whose value is 0): the base and index registers `d` addresses through. */
static inline unsigned ldst_base_register(const ldst_t *d) {
    if (d->kind == LDST_CLEAR_EXCL || d->base_pc || (d->zva && d->rn == 31)) return LDST_NO_REG;
    return d->rn;
}

static inline unsigned ldst_index_register(const ldst_t *d) {
    return d->rm == 31 ? LDST_NO_REG : d->rm;
}

/* The index register's contribution (ExtendReg then shift). */
static inline uint64_t ldst_index(const ldst_t *d, uint64_t rm_value) {
    switch (d->extend) {
    case 2: rm_value = (uint32_t)rm_value; break;
    case 6: rm_value = (uint64_t)(int64_t)(int32_t)rm_value; break;
    default: break;
    }
    return rm_value << d->shift;
}

/* The address of the first access, given the base (and index) register values. */
static inline uint64_t ldst_address(const ldst_t *d, uint64_t base, uint64_t rm_value) {
    uint64_t address = base + (uint64_t)d->offset;
    if (d->rm != LDST_NO_REG) address += ldst_index(d, rm_value);
    if (d->zva) address &= ~(uint64_t)(LDST_ZVA_BLOCK - 1);
    return address;
}

#endif
