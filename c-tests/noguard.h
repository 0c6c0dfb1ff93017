/*
 * noguard.h -- make this process look like it runs on a kernel without
 * MADV_GUARD_INSTALL (before Linux 6.13): a seccomp filter makes
 * madvise() with that advice (102) fail with EINVAL, as such a kernel
 * does; every other system call is allowed. Unprivileged (no_new_privs).
 * For c-tests/thr_parked.c, thr_nomem.c and thr_overflow.c.
 */
#ifndef NOGUARD_H
#define NOGUARD_H

#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>

/* Install the filter; 0, or -1 with a message on stderr. */
static int
hide_guard_advice(void)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		    offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_madvise, 0, 3),
		/* the advice's low 32 bits (little-endian) */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		    offsetof(struct seccomp_data, args[2])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 102, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) {
		perror("seccomp");
		return (-1);
	}
	return (0);
}

#endif
