/*
 * A thread structure reused from the cache of exited threads is as fresh
 * as a new one: thread A writes into every field a program may touch and
 * exits; lwkt_create then hands out A's structure again (with its stack),
 * and everything before td_mach reads as lwkt_create leaves a new thread,
 * compared with a thread whose structure was never used. The reused
 * thread runs on the cached stack with errno 0.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

static int
no_put(lwkt_port_t port, lwkt_msg_t msg)
{
	(void)port;
	(void)msg;
	return (0);
}

static void
scribble(void *arg)
{
	thread_t td = curthread;

	(void)arg;
	td->td_proc = (void *)1;
	td->td_pcb = (void *)2;
	td->td_wmesg = "scribbled";
	td->td_wchan = (void *)3;
	td->td_gen = 4;
	td->td_preemptable = (void *)5;
	td->td_uticks = td->td_sticks = td->td_iticks = 6;
	td->td_locks = 7;
	td->td_nest_count = 8;
	td->td_preempted = (void *)9;
	td->td_msgport.mp_refs = 10;
	td->td_msgport.mp_putport = no_put;
	td->td_msgport.mp_flags = 0x40;
	lwkt_set_comm(td, "scribbler-long-name");
	errno = EIO;
}

static void
runs(void *arg)
{
	(void)arg;
	printf("reused thread runs: errno %d\n", errno);
}

/* The fields before td_mach that differ between two fresh threads. */
static void
compare(thread_t a, thread_t b)
{
	struct thread x = *a, y = *b;
	size_t i, n = offsetof(struct thread, td_mach), diff = 0;

	/* Their own: links, port owner and queue, stack, saved sp. */
	memset(&x.td_threadq, 0, sizeof(x.td_threadq));
	memset(&y.td_threadq, 0, sizeof(y.td_threadq));
	memset(&x.td_allq, 0, sizeof(x.td_allq));
	memset(&y.td_allq, 0, sizeof(y.td_allq));
	x.td_msgport.mp_td = y.td_msgport.mp_td = NULL;
	memset(&x.td_msgport.mp_msgq, 0, sizeof(x.td_msgport.mp_msgq));
	memset(&y.td_msgport.mp_msgq, 0, sizeof(y.td_msgport.mp_msgq));
	x.td_kstack = y.td_kstack = NULL;
	x.td_sp = y.td_sp = NULL;
	for (i = 0; i < n; ++i)
		if (((unsigned char *)&x)[i] != ((unsigned char *)&y)[i])
			++diff;
	printf("bytes that differ from a fresh thread: %zu\n", diff);
	printf("port: owner is itself %d, queue empty %d\n",
	    a->td_msgport.mp_td == a,
	    TAILQ_EMPTY(&a->td_msgport.mp_msgq));
}

int
main(void)
{
	thread_t a, b, fresh;

	uthread_init();
	lwkt_create(scribble, NULL, &a, NULL, 0, -1, "a");
	a->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule_self();
	lwkt_yield();		/* a runs and exits */
	lwkt_create(runs, NULL, &b, NULL, TDF_STOPREQ, -1, "b");
	printf("structure reused: %s\n", b == a ? "yes" : "no");
	lwkt_create(runs, NULL, &fresh, NULL, TDF_STOPREQ, -1, "b");
	printf("fresh structure: %s\n", fresh != a ? "yes" : "no");
	compare(b, fresh);
	printf("name [%s], wmesg %s\n", b->td_comm,
	    b->td_wmesg == NULL ? "NULL" : b->td_wmesg);
	b->td_flags &= ~TDF_VERBOSE;
	fresh->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(b);
	lwkt_schedule(fresh);
	lwkt_deschedule_self();
	lwkt_switch();
	printf("done\n");
	return (0);
}
