// User data holding the address of kernel data: no task can use it.
	.section .user.data, "aw"
	.balign	8
user_ptr:
	.xword	syscall_count
