/*
 * A thread structure that exits after being resumed by an exiting
 * thread, then set up anew, starts in its new function: the switch's
 * record of the last switched-out thread (src/lwkt/arch.rs) never
 * hands it the stack pointer of its previous life.
 *
 * A yields to X (A is then the last thread switched away from); X exits
 * and the cpu goes to A without a switch that records anything; A wakes
 * main and exits, and the cpu goes to main the same way. main creates
 * threads until one gets A's structure (the others wait, descheduled)
 * and yields to it: it must run its own function, and A's code must not
 * run a second time.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdio.h>

#define MAXFILL	8

static thread_t main_thr, a_thr;
static int a_resumed, fillers;

static void
quiet(thread_t td)
{
	td->td_flags &= ~TDF_VERBOSE;
}

static void
thread_a(void *arg)
{
	(void)arg;
	printf("A runs\n");
	lwkt_yield();
	++a_resumed;
	printf("A resumed (%d)\n", a_resumed);
	lwkt_schedule(main_thr);
}

static void
thread_x(void *arg)
{
	(void)arg;
	printf("X runs and exits\n");
}

/* The threads main creates: the one on A's structure says so. */
static void
fresh(void *arg)
{
	(void)arg;
	if (curthread == a_thr)
		printf("the thread on A's structure runs its own function\n");
	else
		++fillers;
}

int
main(void)
{
	thread_t td, x, fill[MAXFILL];
	int i, n = 0;

	uthread_init();
	main_thr = curthread;
	lwkt_create(thread_a, NULL, &a_thr, NULL, 0, -1, "a");
	lwkt_create(thread_x, NULL, &x, NULL, 0, -1, "x");
	quiet(a_thr);
	quiet(x);
	lwkt_deschedule_self();
	lwkt_switch();
	printf("main resumed\n");

	/* Threads until one has A's structure; the others wait. */
	for (;;) {
		lwkt_create(fresh, NULL, &td, NULL, 0, -1, "new");
		quiet(td);
		if (td == a_thr || n == MAXFILL)
			break;
		lwkt_deschedule(td);
		fill[n++] = td;
	}
	printf("A's structure reused: %s\n", td == a_thr ? "yes" : "no");
	/* The cpu to that thread, which exits, then back to main. */
	lwkt_yield();
	printf("A resumed %d time(s)\n", a_resumed);
	for (i = 0; i < n; ++i)
		lwkt_schedule(fill[i]);
	while (fillers < n)
		lwkt_yield();
	printf("done\n");
	return (0);
}
