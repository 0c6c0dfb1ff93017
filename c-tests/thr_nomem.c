/*
 * lwkt_create when memory runs out: threads are created, not run, until
 * lwkt_create fails. It must return ENOMEM, leave NULL in *ptd and say so
 * in one line on stderr, not abort; the threads made so far are intact,
 * and once one is freed lwkt_create works again.
 *
 *   as        (default) under a lowered RLIMIT_AS: the address space
 *             runs out
 *   mapcount  as on a kernel without MADV_GUARD_INSTALL (noguard.h),
 *             where each stack takes two mappings: the vm.max_map_count
 *             mappings run out, near 32,700 threads with the default
 *             65530 (where vm.max_map_count is above 190000, a lowered
 *             RLIMIT_AS ends the run instead)
 */
#include <sys/resource.h>

#include "noguard.h"
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

/* Room for a few hundred 64 KiB stacks and their guards: 0 or -1. */
static int
lower_rlimit_as(void)
{
	struct rlimit rl;

	rl.rlim_cur = rl.rlim_max = status_kib("VmSize") * 1024 + (64L << 20);
	if (setrlimit(RLIMIT_AS, &rl) != 0) {
		perror("setrlimit");
		return (-1);
	}
	return (0);
}

/* vm.max_map_count, 0 if unknown. */
static long
max_map_count(void)
{
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
	long max = 0;

	if (f != NULL) {
		if (fscanf(f, "%ld", &max) != 1)
			max = 0;
		fclose(f);
	}
	return (max);
}

int
main(int ac, char **av)
{
	const char *mode = ac > 1 ? av[1] : "as";
	thread_t td;
	int n, error = 0;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (strcmp(mode, "mapcount") == 0) {
		if (hide_guard_advice() != 0)
			return (1);
		setenv("LIBCAPS_DEBUG", "1", 1);	/* the layout line */
		uthread_init();
		if ((max_map_count() == 0 || max_map_count() > 190000) &&
		    lower_rlimit_as() != 0)
			return (1);
	} else {
		uthread_init();
		if (lower_rlimit_as() != 0)
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
