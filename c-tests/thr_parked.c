/*
 * Many threads parked at once: 100,000 threads, each blocked on a message
 * port of its own (port and message on its own stack, parked.h), all
 * alive together. Every stack has its guard region, yet the process must
 * stay far below vm.max_map_count (65530; two mappings per stack allowed
 * 32,7xx threads), and a parked thread must cost little memory (its
 * stack holds memory only where touched). Then each is sent its message,
 * wakes and exits, and once they are gone their stacks' memory is given
 * back.
 *
 * On a kernel without MADV_GUARD_INSTALL (before Linux 6.13) stacks
 * still take two mappings each: there 10,000 threads are parked and two
 * mappings per stack are expected instead.
 *
 *   thr_parked [N]           N threads (default 100000)
 *   thr_parked noguard [N]   as on a kernel without MADV_GUARD_INSTALL
 *                            (noguard.h), with LIBCAPS_DEBUG on
 */
#include <sys/mman.h>
#include <unistd.h>

#include "noguard.h"
#include "parked.h"

/* Does the kernel know MADV_GUARD_INSTALL? (It checks the advice first.) */
static int
has_guard_advice(void)
{
	return (madvise((void *)sysconf(_SC_PAGESIZE), 0, 102) == 0);
}

int
main(int ac, char **av)
{
	long n, rss0, rss1, rss2, maps0, maps1, added;
	int arenas, ok;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (ac > 1 && strcmp(av[1], "noguard") == 0) {
		if (hide_guard_advice() != 0)
			return (1);
		setenv("LIBCAPS_DEBUG", "1", 1);	/* the layout line */
		--ac;
		++av;
	}
	arenas = has_guard_advice();
	n = ac > 1 ? atol(av[1]) : arenas ? 100000 : 10000;
	uthread_init();
	rss0 = status_kib("VmRSS");
	maps0 = count_lines("/proc/self/maps");
	if (park(n) != 0)
		return (1);
	maps1 = count_lines("/proc/self/maps");
	rss1 = status_kib("VmRSS");
	printf("parked all threads: %s\n", nparked == n &&
	    mycpu->gd_num_threads - 1 == n ? "yes" : "no");
	added = maps1 - maps0;
	ok = arenas ? added < 1000 : added >= 2 * n;
	printf("mappings added as the stack layout says: %s\n", ok ? "yes" : "no");
	if (!ok)
		printf("  %s: %ld mappings before, %ld after, %ld threads\n",
		    arenas ? "arenas" : "a mapping each", maps0, maps1, n);
	printf("memory per parked thread under 8 KiB: %s\n",
	    (rss1 - rss0) * 1024 / n < 8192 ? "yes" : "no");
	if ((rss1 - rss0) * 1024 / n >= 8192)
		printf("  %ld KiB before, %ld KiB after\n", rss0, rss1);
	wake_all(n);
	rss2 = status_kib("VmRSS");
	printf("all woken and exited: %s, threads left %d\n",
	    nwoken == n ? "yes" : "no", mycpu->gd_num_threads - 1);
	printf("memory given back after the exits: %s\n",
	    rss2 - rss0 < (rss1 - rss0) / 4 ? "yes" : "no");
	if (rss2 - rss0 >= (rss1 - rss0) / 4)
		printf("  %ld KiB before, %ld KiB parked, %ld KiB after\n",
		    rss0, rss1, rss2);
	return (0);
}
