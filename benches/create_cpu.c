/*
 * create_cpu -- lwkt_create + first run + exit of a thread whose stack
 * comes from the cpu's cache, timed in the thread's own CPU time
 * (CLOCK_THREAD_CPUTIME_ID), so that the time other processes of a shared
 * machine take from this one is not counted (what they leave in the
 * caches still is). Prints the fastest of R runs of N, ns per operation:
 *
 *   taskset -c 1 ./build/create_cpu N R [CACHED]
 *
 * CACHED (default 4) threads are made and exit before the runs, so that
 * the cache of exited threads holds more than the one thread the loop
 * recycles, as it does in ctxsw_bench after its other rows.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/thread2.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long ran;

static void
tiny(void *arg)
{
	(void)arg;
	++ran;
}

/* This thread's CPU time since *t0, ns. */
static double
cpu_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
	return ((t1.tv_sec - t0->tv_sec) * 1e9 + (t1.tv_nsec - t0->tv_nsec));
}

static thread_t
make(void)
{
	thread_t td;

	lwkt_create(tiny, NULL, &td, NULL, 0, -1, "tiny");
	td->td_flags &= ~TDF_VERBOSE;
	return (td);
}

int
main(int argc, char **argv)
{
	long n, i, cached;
	int r, runs;
	double t, best = 0;
	struct timespec t0;

	if (argc < 3 || (n = atol(argv[1])) <= 0 || (runs = atoi(argv[2])) <= 0) {
		fprintf(stderr, "usage: create_cpu N R [CACHED]\n");
		return (2);
	}
	cached = argc > 3 ? atol(argv[3]) : 4;
	uthread_init();
	lwkt_schedule_self();
	for (i = 0; i < cached; ++i)
		make();
	lwkt_yield();
	for (r = 0; r < runs; ++r) {
		ran = 0;
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
		for (i = 0; i < n; ++i) {
			make();
			lwkt_yield();
		}
		t = cpu_since(&t0) / n;
		if (ran != n) {
			fprintf(stderr, "create_cpu: %ld of %ld threads ran\n", ran, n);
			return (1);
		}
		if (r == 0 || t < best)
			best = t;
	}
	lwkt_deschedule_self();
	printf("create + first run + exit: %.2f ns CPU time (fastest of %d runs of %ld, %ld cached)\n",
	    best, runs, n, cached);
	return (0);
}
