/*
 * lwkt_create when memory runs out: under a lowered RLIMIT_AS (address
 * space; what a full vm.max_map_count or an exhausted machine look like
 * to the library too) threads are created, not run, until lwkt_create
 * fails. It must return ENOMEM, leave NULL in *ptd and say so in one
 * line on stderr, not abort; the threads made so far are intact, and
 * once one is freed lwkt_create works again.
 */
#include <sys/resource.h>

#include "parked.h"		/* status_kib() */

#define MAXTHREADS	100000

static thread_t tds[MAXTHREADS];
static int ran;

static void
worker(void *arg)
{
	(void)arg;
	++ran;
}

int
main(void)
{
	struct rlimit rl;
	thread_t td;
	int n, error = 0;

	setvbuf(stdout, NULL, _IONBF, 0);
	uthread_init();
	/* Room for a few hundred 64 KiB stacks and their guards. */
	rl.rlim_cur = rl.rlim_max = status_kib("VmSize") * 1024 + (64L << 20);
	if (setrlimit(RLIMIT_AS, &rl) != 0) {
		perror("setrlimit");
		return (1);
	}
	for (n = 0; n < MAXTHREADS; ++n) {
		td = (thread_t)1;
		error = lwkt_create(worker, NULL, &td, NULL, TDF_STOPREQ, -1,
		    "t%d", n);
		if (error != 0)
			break;
		tds[n] = td;
	}
	printf("some threads made before the limit: %s\n",
	    n > 10 && n < MAXTHREADS ? "yes" : "no");
	printf("lwkt_create returned ENOMEM: %s\n",
	    error == ENOMEM ? "yes" : "no");
	printf("*ptd is NULL: %s\n", td == NULL ? "yes" : "no");
	error = lwkt_create(worker, NULL, &td, NULL, TDF_STOPREQ, -1, "again");
	printf("still ENOMEM: %s\n", error == ENOMEM ? "yes" : "no");
	lwkt_free_thread(tds[n - 1]);
	tds[n - 1] = NULL;
	error = lwkt_create(worker, NULL, &td, NULL, TDF_STOPREQ, -1, "freed");
	printf("after freeing one, lwkt_create works: %s\n",
	    error == 0 && td != NULL ? "yes" : "no");
	if (error == 0) {
		td->td_flags &= ~TDF_VERBOSE;
		lwkt_schedule(td);
	}
	/* The others are intact: run the first ten. */
	for (n = 0; n < 10; ++n) {
		tds[n]->td_flags &= ~TDF_VERBOSE;
		lwkt_schedule(tds[n]);
	}
	lwkt_yield();
	printf("threads that ran: %d\n", ran);
	return (0);
}
