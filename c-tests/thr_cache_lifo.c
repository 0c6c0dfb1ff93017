/*
 * The cache of exited threads hands out the thread that went into it
 * last (its structure and the top of its stack are the ones most likely
 * still in the cpu's caches): A and B run and exit in that order, and the
 * next lwkt_create gets B's structure, the one after it A's. A thread
 * still held when it exits goes into the cache at its last lwkt_rele,
 * and is the next one handed out.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/thread2.h>
#include <stdio.h>

static void
quiet(void *arg)
{
	(void)arg;
}

static thread_t
make(const char *name, int flags)
{
	thread_t td;

	lwkt_create(quiet, NULL, &td, NULL, flags, -1, name);
	td->td_flags &= ~TDF_VERBOSE;
	return (td);
}

/* Let every runnable thread run (and exit). */
static void
run_them(void)
{
	lwkt_schedule_self();
	lwkt_yield();
	lwkt_deschedule_self();
}

int
main(void)
{
	thread_t a, b, c, d, held, e;

	uthread_init();
	a = make("a", 0);
	b = make("b", 0);
	run_them();		/* a exits, then b */
	c = make("c", TDF_STOPREQ);
	d = make("d", TDF_STOPREQ);
	printf("first created after a and b exit: %s\n",
	    c == b ? "b's structure" : c == a ? "a's structure" : "another");
	printf("second: %s\n",
	    d == a ? "a's structure" : d == b ? "b's structure" : "another");
	lwkt_schedule(c);
	lwkt_schedule(d);
	run_them();		/* c exits, then d */
	held = make("held", 0);
	lwkt_hold(held);
	run_them();		/* held exits, kept out of the cache */
	lwkt_rele(held);
	e = make("e", 0);
	printf("created after the last release: %s\n",
	    e == held ? "the released structure" : "another");
	run_them();
	printf("done\n");
	return (0);
}
