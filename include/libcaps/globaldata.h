/*
 * <libcaps/globaldata.h> -- per-cpu data, `mycpu` and `curthread`
 * (libcaps for Linux).
 *
 * Each virtual cpu is one kernel thread; `mycpu` reads that kernel
 * thread's pointer to its struct globaldata (one TLS load). The first use
 * in a program that never called uthread_init() sets up cpu 0 on the
 * calling kernel thread. `curthread` is mycpu->gd_curthread, as in
 * DragonFly.
 */
#ifndef _LIBCAPS_GLOBALDATA_H_
#define _LIBCAPS_GLOBALDATA_H_

#include <sys/types.h>
#include <assert.h>
/*
 * exit(), abort(): DragonFly's caps1.c calls exit() and strtol() having
 * included only this header, the kernel ones and <stdio.h>, <signal.h>;
 * compilers of 2003 let that pass, today's reject the implicit
 * declarations.
 */
#include <stdlib.h>
#include <sys/thread.h>		/* struct thread is embedded (gd_idlethread) */
#include <libcaps/slaballoc.h>	/* SLGlobalData is embedded (gd_slab) */

#include <libcaps/gen/globaldata.h>

#define MAXVCPU		32

#ifdef __cplusplus
extern "C" {
#endif

extern struct globaldata gdary[MAXVCPU];
extern int ncpus;		/* virtual cpus started */
extern int smp_active;
extern int mp_lock;		/* -1: free, else the owning cpu */
extern const char *panicstr;

/* The current cpu of this kernel thread (NULL before set-up). */
extern __thread struct globaldata *__libcaps_mycpu
    __attribute__((__tls_model__("initial-exec")));

static __inline struct globaldata *
_libcaps_mycpu(void)
{
	struct globaldata *gd = __libcaps_mycpu;

	if (__builtin_expect(gd == NULL, 0))
		gd = libcaps_mycpu_slow();
	return (gd);
}

#define mycpu		(_libcaps_mycpu())
#define curthread	(mycpu->gd_curthread)

/* Print the message on stderr and abort(). */
void	panic(const char *ctl, ...)
	    __attribute__((__noreturn__, __format__(__printf__, 1, 2)));

#ifdef __cplusplus
}
#endif

#define KASSERT(exp, printargs)	do { if (!(exp)) panic printargs; } while (0)
#define KKASSERT(exp)		assert(exp)

#endif /* !_LIBCAPS_GLOBALDATA_H_ */
