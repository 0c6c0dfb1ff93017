/*
 * Thread stacks on a kernel without MADV_GUARD_INSTALL (before Linux
 * 6.13), imitated with a seccomp filter (noguard.h). The library must
 * notice once, say so under LIBCAPS_DEBUG, and give each stack a mapping
 * of its own with a PROT_NONE guard (which still catches an overflow:
 * thr_overflow recurse-noguard).
 *
 *   maps      100 threads made (not run): at least two more lines of
 *             /proc/self/maps each; all run and exit
 *   mapcount  threads made (not run) until the vm.max_map_count mappings
 *             run out, near 32,700 with the default 65530: lwkt_create
 *             returns ENOMEM (one line on stderr) instead of aborting;
 *             after one is freed it works again. (Where vm.max_map_count
 *             is above 140000, a lowered RLIMIT_AS ends the run instead.)
 */
#include <sys/resource.h>

#include "noguard.h"
#include "parked.h"		/* count_lines(), status_kib() */

#define NTHREADS	100
#define MAXMAPPED	70000	/* more than the default vm.max_map_count / 2 */

static int ran;

static void
worker(void *arg)
{
	(void)arg;
	++ran;
}

int
main(int ac, char **av)
{
	const char *mode = ac > 1 ? av[1] : "maps";
	thread_t td;
	long maps0, maps1;
	int i;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (hide_guard_advice() != 0)
		return (1);
	setenv("LIBCAPS_DEBUG", "1", 1);	/* the layout line */
	uthread_init();
	if (strcmp(mode, "mapcount") == 0) {
		static thread_t tds[MAXMAPPED];
		FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
		long max = 0;
		int error = 0;

		if (f != NULL) {
			if (fscanf(f, "%ld", &max) != 1)
				max = 0;
			fclose(f);
		}
		if (max == 0 || max > 2 * (MAXMAPPED - 5000)) {
			struct rlimit rl;

			rl.rlim_cur = rl.rlim_max =
			    status_kib("VmSize") * 1024 + (64L << 20);
			setrlimit(RLIMIT_AS, &rl);
		}
		for (i = 0; i < MAXMAPPED; ++i) {
			error = lwkt_create(worker, NULL, &tds[i], NULL,
			    TDF_STOPREQ, -1, "m%d", i);
			if (error != 0)
				break;
		}
		printf("ENOMEM when the mappings ran out: %s\n",
		    error == ENOMEM && i > 1000 ? "yes" : "no");
		lwkt_free_thread(tds[i - 1]);
		error = lwkt_create(worker, NULL, &td, NULL, TDF_STOPREQ, -1,
		    "again");
		printf("after freeing one, lwkt_create works: %s\n",
		    error == 0 ? "yes" : "no");
		return (0);
	}
	maps0 = count_lines("/proc/self/maps");
	for (i = 0; i < NTHREADS; ++i) {
		lwkt_create(worker, NULL, &td, NULL, 0, -1, "w%d", i);
		td->td_flags &= ~TDF_VERBOSE;
	}
	maps1 = count_lines("/proc/self/maps");
	printf("two mappings or more per stack: %s\n",
	    maps1 - maps0 >= 2 * NTHREADS ? "yes" : "no");
	if (maps1 - maps0 < 2 * NTHREADS)
		printf("  %ld lines before, %ld after\n", maps0, maps1);
	lwkt_yield();
	printf("threads that ran: %d\n", ran);
	return (0);
}
