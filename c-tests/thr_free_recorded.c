/*
 * lwkt_free_thread of a thread that is switched out but has not exited
 * (the last thread the cpu switched away from), then a structure set up
 * anew at its address: the switch into the new thread starts it in its
 * own function. The switch's record of the last switched-out thread
 * (src/lwkt/arch.rs) must not hand it the stack pointer of the freed
 * thread.
 *
 * A, made on a structure of the program's, deschedules itself and
 * switches to main (A is then recorded). main frees A, makes a thread
 * on the same structure and yields to it: it must run its own function,
 * and A's code must not run again.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdio.h>

static struct thread a_struct;
static thread_t a_thr;
static int a_resumed;

static void
thread_a(void *arg)
{
	(void)arg;
	printf("A runs and waits\n");
	lwkt_deschedule_self();
	lwkt_switch();
	/* Only a stale stack pointer gets here: A was freed. */
	++a_resumed;
	printf("A resumed after it was freed\n");
}

/* The thread main makes on A's structure once A is freed. */
static void
fresh(void *arg)
{
	(void)arg;
	printf("the thread on A's structure runs its own function\n");
}

int
main(void)
{
	thread_t td;

	uthread_init();
	/* Without the "has exited" lines (TDF_VERBOSE). */
	lwkt_create(thread_a, NULL, &a_thr, &a_struct, 0, -1, "a");
	a_thr->td_flags &= ~TDF_VERBOSE;
	/* To A, which switches back to main without exiting. */
	lwkt_yield();
	printf("main resumed\n");
	lwkt_free_thread(a_thr);

	lwkt_create(fresh, NULL, &td, &a_struct, 0, -1, "new");
	td->td_flags &= ~TDF_VERBOSE;
	printf("A's structure reused: %s\n", td == a_thr ? "yes" : "no");
	/* The cpu to that thread, which exits, then back to main. */
	lwkt_yield();
	printf("A resumed %d time(s)\n", a_resumed);
	printf("done\n");
	return (0);
}
