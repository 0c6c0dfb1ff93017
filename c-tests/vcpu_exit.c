/*
 * Forking virtual cpus up to MAXVCPU, then exit() while they run: cpu 1
 * runs a thread that switches forever, cpu 2 one that waits forever on
 * its port, the others are idle. exit(3) from main must end the process
 * with status 3 and its output flushed.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdio.h>
#include <stdlib.h>

static volatile int spinning;

static void
spinner(void *arg)
{
	(void)arg;
	rel_mplock();
	for (;;) {
		spinning = 1;
		lwkt_switch();
	}
}

static void
waiter(void *arg)
{
	(void)arg;
	rel_mplock();
	lwkt_waitport(&curthread->td_msgport, NULL);
}

int
main(void)
{
	int i, n = 0, last = 0, ids_ok = 1, distinct = 1;

	uthread_init();
	while ((i = caps_fork_vcpu()) >= 0) {
		++n;
		last = i;
	}
	for (i = 0; i < ncpus; ++i) {
		if ((int)globaldata_find(i)->gd_cpuid != i ||
		    globaldata_find(i)->gd_self != globaldata_find(i))
			ids_ok = 0;
		if (i > 0 && globaldata_find(i)->gd_pid == mycpu->gd_pid)
			distinct = 0;
	}
	printf("forked %d vcpus (last id %d), then %d; ncpus %d\n", n, last,
	    caps_fork_vcpu(), ncpus);
	printf("ids and self pointers ok %d, one kernel thread each %d\n",
	    ids_ok, distinct);
	lwkt_create(spinner, NULL, NULL, NULL, 0, 1, "spinner");
	lwkt_create(waiter, NULL, NULL, NULL, 0, 2, "waiter");
	rel_mplock();		/* new threads are born needing it */
	while (!spinning)
		lwkt_yield();
	printf("exiting while cpus run\n");
	exit(3);
}
