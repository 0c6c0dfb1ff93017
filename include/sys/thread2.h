/*
 * <sys/thread2.h> -- inline critical sections (libcaps for Linux).
 *
 * A critical section adds TDPRI_CRIT to curthread->td_pri; leaving the
 * outermost one with a request pending (gd_reqflags) lets a higher
 * priority thread run. A negative count calls crit_panic(), which reports
 * it and aborts. Switching or blocking inside a critical section is an
 * error that libcaps reports.
 */
#ifndef _SYS_THREAD2_H_
#define _SYS_THREAD2_H_

#include <sys/thread.h>
#include <libcaps/globaldata.h>

static __inline void
crit_enter(void)
{
	curthread->td_pri += TDPRI_CRIT;
}

static __inline void
crit_enter_quick(struct thread *td)
{
	td->td_pri += TDPRI_CRIT;
}

static __inline void
crit_exit_noyield(struct thread *td)
{
	td->td_pri -= TDPRI_CRIT;
	if (td->td_pri < 0)
		crit_panic();
}

static __inline void
crit_exit_quick(struct thread *td)
{
	td->td_pri -= TDPRI_CRIT;
	if (td->td_pri < 0)
		crit_panic();
	if (td->td_pri < TDPRI_CRIT && td->td_gd->gd_reqflags)
		lwkt_yield_quick();
}

static __inline void
crit_exit(void)
{
	crit_exit_quick(curthread);
}

/* Leave every critical section (for panic paths); returns the old td_pri. */
static __inline int
crit_panic_save(void)
{
	struct thread *td = curthread;
	int pri = td->td_pri;

	td->td_pri = td->td_pri & TDPRI_MASK;
	return (pri);
}

static __inline void
crit_panic_restore(int cpri)
{
	curthread->td_pri = cpri;
}

/* Non-zero if some thread of this cpu is runnable. */
static __inline int
lwkt_runnable(void)
{
	return (mycpu->gd_runqmask != 0);
}

#endif /* !_SYS_THREAD2_H_ */
