/*
 * Priorities: the highest-priority runnable thread always runs first,
 * threads of equal priority take turns (round robin on lwkt_yield), and
 * lwkt_setpri() on a queued thread moves it to its new queue. A thread
 * created with TDF_STOPREQ is not scheduled until lwkt_schedule().
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdio.h>
#include <stdlib.h>

static void
say(void *arg)
{
	printf("%s pri %d\n", (const char *)arg, curthread->td_pri);
}

static void
twice(void *arg)
{
	int i;

	for (i = 0; i < 3; ++i) {
		printf("%s%d\n", (const char *)arg, i);
		lwkt_yield();
	}
}

static thread_t
make(void (*fn)(void *), const char *name, int pri, int flags)
{
	thread_t td;

	lwkt_create(fn, (void *)name, &td, NULL, flags, -1, "%s", name);
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_setpri(td, pri);
	return (td);
}

int
main(void)
{
	thread_t late;

	uthread_init();
	make(say, "low", TDPRI_KERN_DAEMON, 0);
	make(twice, "A", TDPRI_SOFT_NORM, 0);
	make(twice, "B", TDPRI_SOFT_NORM, 0);
	make(say, "high", TDPRI_INT_SUPPORT, 0);
	/* "low" was created at 12, now moved down to 8 while queued. */
	lwkt_setpri(TAILQ_FIRST(&mycpu->gd_tdrunq[TDPRI_KERN_DAEMON]),
	    TDPRI_USER_REAL);
	printf("main pri %d runqmask %08x\n", curthread->td_pri,
	    mycpu->gd_runqmask);
	lwkt_deschedule_self();
	lwkt_switch();
	printf("main back\n");
	/* Created stopped: does not run until scheduled. */
	late = make(say, "late", TDPRI_MAX, TDF_STOPREQ);
	lwkt_yield();
	printf("late not run yet\n");
	lwkt_schedule(late);
	lwkt_deschedule_self();
	lwkt_switch();
	printf("main done\n");
	return (0);
}
