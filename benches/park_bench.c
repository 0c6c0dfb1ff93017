/*
 * park_bench.c -- many parked LWKT threads (issue 19): N threads (default
 * 1,000,000), each blocked on a message port of its own that lives, with
 * the message that will wake it, on its own stack. Prints what they cost
 * (VmRSS from /proc/self/status, before and with them parked; KB per
 * thread; lines of /proc/self/maps, against vm.max_map_count), then wakes
 * them all and times both halves.
 *
 *   park_bench [N]
 */
#define _GNU_SOURCE		/* sched_setaffinity in bench_util.h */
#include <sys/resource.h>

#include "../c-tests/parked.h"
#include "bench_util.h"

static long
read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (f != NULL) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return (v);
}

/* CPU seconds of the process, user and system. */
static double
cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
}

int
main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	long rss0, rss1, pte1, maps0, maps1;
	double t0, t1, t2, c0, c1, c2;

	if (n < 1)
		n = 1000000;
	setvbuf(stdout, NULL, _IONBF, 0);
	uthread_init();
	rss0 = status_kib("VmRSS");
	maps0 = count_lines("/proc/self/maps");
	t0 = now();
	c0 = cpu();
	if (park(n) != 0)
		return (1);
	t1 = now();
	c1 = cpu();
	rss1 = status_kib("VmRSS");
	pte1 = status_kib("VmPTE");
	maps1 = count_lines("/proc/self/maps");
	printf("parked threads                 %ld of %ld\n", nparked, n);
	printf("VmRSS before / parked          %ld KiB / %ld KiB\n", rss0, rss1);
	printf("KB per parked thread           %.2f (%.0f bytes; page tables "
	    "not in VmRSS: VmPTE %ld KiB)\n", (rss1 - rss0) * 1024.0 / n / 1000,
	    (rss1 - rss0) * 1024.0 / n, pte1);
	printf("lines of /proc/self/maps       %ld before, %ld parked "
	    "(vm.max_map_count %ld)\n", maps0, maps1,
	    read_long("/proc/sys/vm/max_map_count"));
	printf("create + park                  %.2f s, %.0f ns per thread "
	    "(CPU %.0f ns)\n", t1 - t0, (t1 - t0) * 1e9 / n, (c1 - c0) * 1e9 / n);
	wake_all(n);
	t2 = now();
	c2 = cpu();
	printf("wake + exit + free             %.2f s, %.0f ns per thread "
	    "(CPU %.0f ns)\n", t2 - t1, (t2 - t1) * 1e9 / n, (c2 - c1) * 1e9 / n);
	printf("VmRSS after                    %ld KiB\n", status_kib("VmRSS"));
	printf("peer: Boost.Context fcontext, 100,000 parked at 4.0 KB each "
	    "(issue 19's measurement; not run here)\n");
	return (0);
}
