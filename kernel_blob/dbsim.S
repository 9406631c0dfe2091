// dbsim, the kernel side of a database-like load: rows live in kernel
// buffers (think page cache) in node 0's memory, found through a shared hash
// index; EL0 tasks on every node look keys up and copy rows out to user
// memory, several syscalls per query.  The code and the syscall table are
// replicated; the index and the rows are shared read-write data.

	.include "asm-offsets.inc"

	.bss
	.balign	4096
	.globl	db_rows
db_rows:
	.zero	DB_ROWS * DB_ROW_BYTES
	.size	db_rows, . - db_rows
db_keys:
	.zero	8 * DB_ROWS
db_next:
	.zero	8 * DB_ROWS			// hash chain: row + 1, 0 ends it
db_buckets:
	.zero	8 << DB_BUCKET_SHIFT		// first row + 1 of each bucket

	.text

	.macro	db_hash, out, key, tmp
	ldr	\tmp, =0x9e3779b97f4a7c15
	mul	\out, \key, \tmp
	lsr	\out, \out, #(64 - DB_BUCKET_SHIFT)
	.endm

// db_init(): fill every row and insert it in the index (boot CPU, at boot).
	.globl	db_init
	.type	db_init, %function
db_init:
	adrp	x10, db_rows
	add	x10, x10, :lo12:db_rows
	adrp	x11, db_keys
	add	x11, x11, :lo12:db_keys
	adrp	x12, db_next
	add	x12, x12, :lo12:db_next
	adrp	x13, db_buckets
	add	x13, x13, :lo12:db_buckets
	ldr	x14, =DB_KEY_MULT
	ldr	x15, =0x0101010101010101
	mov	x0, #0				// row
1:	mul	x1, x0, x14
	and	x1, x1, #0xffffffff		// key
	str	x1, [x11, x0, lsl #3]
	db_hash	x2, x1, x3
	ldr	x4, [x13, x2, lsl #3]
	str	x4, [x12, x0, lsl #3]
	add	x5, x0, #1
	str	x5, [x13, x2, lsl #3]
	mov	x6, #0				// word in the row
2:	mul	x7, x6, x15
	eor	x7, x7, x1
	str	x7, [x10], #8
	add	x6, x6, #1
	cmp	x6, #(DB_ROW_BYTES / 8)
	b.lo	2b
	add	x0, x0, #1
	cmp	x0, #DB_ROWS
	b.lo	1b
	ret
	.size	db_init, . - db_init

// long sys_db_lookup(u64 key): the row holding key, or -ENOENT
	.globl	sys_db_lookup
	.type	sys_db_lookup, %function
sys_db_lookup:
	db_hash	x1, x0, x2
	adrp	x3, db_buckets
	add	x3, x3, :lo12:db_buckets
	ldr	x4, [x3, x1, lsl #3]
	adrp	x5, db_keys
	add	x5, x5, :lo12:db_keys
	adrp	x6, db_next
	add	x6, x6, :lo12:db_next
1:	cbz	x4, 2f
	sub	x7, x4, #1
	ldr	x8, [x5, x7, lsl #3]
	cmp	x8, x0
	b.eq	3f
	ldr	x4, [x6, x7, lsl #3]
	b	1b
2:	mov	x0, #-ENOENT
	ret
3:	mov	x0, x7
	ret
	.size	sys_db_lookup, . - sys_db_lookup

// long sys_db_read(long row, void __user *buf, size_t len): copy_to_user of
// the first len bytes (a multiple of 16) of a row; bytes copied or -EINVAL
	.globl	sys_db_read
	.type	sys_db_read, %function
sys_db_read:
	cmp	x0, #DB_ROWS
	b.hs	2f
	cmp	x2, #DB_ROW_BYTES
	b.hi	2f
	tst	x2, #15
	b.ne	2f
	adrp	x3, db_rows
	add	x3, x3, :lo12:db_rows
	mov	x4, #DB_ROW_BYTES
	madd	x3, x0, x4, x3
	mov	x0, x2
	cbz	x2, 3f
1:	ldp	x5, x6, [x3], #16
	stp	x5, x6, [x1], #16
	subs	x2, x2, #16
	b.ne	1b
3:	ret
2:	mov	x0, #-EINVAL
	ret
	.size	sys_db_read, . - sys_db_read
