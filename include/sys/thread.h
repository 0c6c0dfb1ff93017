/*
 * <sys/thread.h> -- LWKT threads (libcaps for Linux).
 *
 * Source-compatible with the DragonFly BSD header used by libcaps in
 * December 2003 (rev 1.42 layout without td_caps, td_mpcount because
 * libcaps is built with -DSMP). The structures and most prototypes come
 * from the cbindgen-generated <libcaps/gen/thread.h>; this file adds the
 * typedefs, the TDF_ and TDPRI_ tables, the variadic prototypes and pulls
 * in <libcaps/globaldata.h> so that `curthread` and `mycpu` work.
 *
 * struct md_thread is not empty (C forbids empty structs): it records the
 * thread's stack mapping. Programs never need to look inside it.
 */
#ifndef _SYS_THREAD_H_
#define _SYS_THREAD_H_

#include <sys/types.h>
#include <sys/queue.h>
#include <stddef.h>
#include <sys/msgport.h>

struct globaldata;
struct proc;
struct pcb;
struct md_intr_info;

#include <libcaps/gen/thread.h>

typedef struct lwkt_token	lwkt_token;
typedef struct lwkt_wait	lwkt_wait;
typedef struct lwkt_ipiq	lwkt_ipiq;

#ifndef MAXCOMLEN
#define MAXCOMLEN	16
#endif
#define MAXCPUFIFO	16		/* power of 2 */
#define MAXCPUFIFO_MASK	(MAXCPUFIFO - 1)

/* td_flags */
#define TDF_RUNNING		0x0001	/* thread still active */
#define TDF_RUNQ		0x0002	/* on an LWKT run queue */
#define TDF_PREEMPT_LOCK	0x0004	/* I have been preempted */
#define TDF_PREEMPT_DONE	0x0008	/* acknowledge preemption complete */
#define TDF_IDLE_NOHLT		0x0010	/* we need to spin */
#define TDF_SYSTHREAD		0x0100	/* system thread */
#define TDF_ALLOCATED_THREAD	0x0200	/* zalloc allocated thread */
#define TDF_ALLOCATED_STACK	0x0400	/* zalloc allocated stack */
#define TDF_VERBOSE		0x0800	/* verbose on exit */
#define TDF_DEADLKTREAT		0x1000	/* special lockmgr deadlock treatment */
#define TDF_STOPREQ		0x2000	/* suspend_kproc */
#define TDF_WAKEREQ		0x4000	/* resume_kproc */
#define TDF_TIMEOUT		0x8000	/* tsleep timeout */
#define TDF_INTTHREAD		0x00010000	/* interrupt thread */

/* td_pri: priority in the low 5 bits, plus TDPRI_CRIT per critical section */
#define TDPRI_IDLE_THREAD	0	/* the idle thread */
#define TDPRI_USER_IDLE		4	/* user scheduler idle */
#define TDPRI_USER_NORM		6	/* user scheduler normal */
#define TDPRI_USER_REAL		8	/* user scheduler real time */
#define TDPRI_KERN_LPSCHED	9	/* scheduler helper for userland sch */
#define TDPRI_KERN_USER		10	/* kernel / block in syscall */
#define TDPRI_KERN_DAEMON	12	/* kernel daemon (pageout, etc) */
#define TDPRI_SOFT_NORM		14	/* kernel / normal */
#define TDPRI_SOFT_TIMER	16	/* kernel / timer */
#define TDPRI_EXITING		19	/* exiting thread */
#define TDPRI_INT_SUPPORT	20	/* kernel / high priority support */
#define TDPRI_INT_LOW		27	/* low priority interrupt */
#define TDPRI_INT_MED		28	/* medium priority interrupt */
#define TDPRI_INT_HIGH		29	/* high priority interrupt */
#define TDPRI_MAX		31

#define TDPRI_MASK		31
#define TDPRI_CRIT		32	/* high bits of td_pri used for crit */

#define CACHE_NTHREADS		6
#define THREAD_STACK		65536	/* stack of a thread made by lwkt_create */

#define IN_CRITICAL_SECT(td)	((td)->td_pri >= TDPRI_CRIT)

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Create a thread running func(arg), named by the printf-style ctl, on
 * cpu `cpu` (-1: the current one); it is scheduled unless tdflags has
 * TDF_STOPREQ. *ptd (if ptd is not NULL) receives the thread. A returning
 * func ends in lwkt_exit(). Returns 0, or ENOMEM when no memory, address
 * space or memory mapping is left for the thread or its stack: then
 * *ptd (if ptd is not NULL) is set to NULL, one line naming the thread
 * is written to stderr, and nothing else changes (DragonFly's always
 * returned 0; this one aborted before issue 19).
 *
 * The thread starts with errno 0, the floating-point control state the
 * thread package started with, and a stack of THREAD_STACK (64 KiB)
 * bytes, or LIBCAPS_STACK_SIZE (e.g. "1M") if that was set in the
 * environment before the first libcaps call; a 64 KiB guard lies below
 * it and an overflow is reported with the thread's name. On Linux 6.13
 * and later stacks share large mappings (guard pages by
 * MADV_GUARD_INSTALL), so vm.max_map_count does not bound the number of
 * threads; before, each stack takes two mappings.
 *
 * The MP lock: the thread is born holding it (td_mpcount 1), as in
 * DragonFly, and only the cpu owning it runs threads that hold it. A
 * thread on another cpu (caps_fork_vcpu()) that should run in parallel
 * calls rel_mplock() first. A thread that waits for a thread of another
 * cpu must block or lwkt_yield(): a yield hands the lock to a cpu that
 * waits for it, a busy loop without yielding starves that cpu.
 */
int	lwkt_create(void (*func)(void *), void *arg, struct thread **ptd,
	    struct thread *template_td, int tdflags, int cpu,
	    const char *ctl, ...) __attribute__((__format__(__printf__, 7, 8)));
/* Set td->td_comm from a printf-style format (truncated to MAXCOMLEN). */
void	lwkt_set_comm(thread_t td, const char *ctl, ...)
	    __attribute__((__format__(__printf__, 2, 3)));
void	lwkt_exit(void) __attribute__((__noreturn__));
void	crit_panic(void) __attribute__((__noreturn__));

#ifdef __cplusplus
}
#endif

#include <libcaps/globaldata.h>

#endif /* !_SYS_THREAD_H_ */
