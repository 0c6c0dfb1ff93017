/*
 * A thread created with TDF_SYSTHREAD in lwkt_create's flags is a system
 * thread from the start: main, waiting for the threads that are not
 * system threads, is resumed once the user thread has exited, although
 * the system thread is still parked (descheduled for good).
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/thread2.h>
#include <stdio.h>

static void
parked(void *arg)
{
	(void)arg;
	printf("system thread %s runs, flagged %d\n", curthread->td_comm,
	    (curthread->td_flags & TDF_SYSTHREAD) != 0);
	lwkt_deschedule_self();
	lwkt_switch();
	printf("system thread resumed (it should not be)\n");
}

static void
user(void *arg)
{
	(void)arg;
	printf("user thread %s runs and exits\n", curthread->td_comm);
}

int
main(void)
{
	thread_t sys, usr;

	uthread_init();
	lwkt_create(parked, NULL, &sys, NULL, TDF_SYSTHREAD, -1, "sysd");
	sys->td_flags &= ~TDF_VERBOSE;
	lwkt_create(user, NULL, &usr, NULL, 0, -1, "worker");
	usr->td_flags &= ~TDF_VERBOSE;
	lwkt_deschedule_self();
	lwkt_switch();
	printf("main resumed; system threads on cpu 0: %d\n",
	    mycpu->gd_sys_threads);
	return (0);
}
