/*
 * Many threads parked at once: 100,000 threads, each blocked on a message
 * port of its own (port and message on its own stack, parked.h), all
 * alive together. Every stack has its guard region, yet the process must
 * stay far below vm.max_map_count (65530, two mappings per stack allowed
 * 32,7xx threads), and a parked thread must cost little memory (its
 * stack holds memory only where touched). Then each is sent its message,
 * wakes and exits, and once they are gone their stacks' memory is given
 * back.
 *
 *   thr_parked [N]   N threads (default 100000)
 */
#include "parked.h"

int
main(int ac, char **av)
{
	long n = ac > 1 ? atol(av[1]) : 100000;
	long rss0, rss1, rss2, maps0, maps1;

	setvbuf(stdout, NULL, _IONBF, 0);
	uthread_init();
	rss0 = status_kib("VmRSS");
	maps0 = count_lines("/proc/self/maps");
	if (park(n) != 0)
		return (1);
	maps1 = count_lines("/proc/self/maps");
	rss1 = status_kib("VmRSS");
	printf("parked %ld of %ld threads, %d threads on the cpu\n", nparked, n,
	    mycpu->gd_num_threads - 1);
	printf("mappings added: fewer than 1000: %s\n",
	    maps1 - maps0 < 1000 ? "yes" : "no");
	if (maps1 - maps0 >= 1000)
		printf("  %ld mappings before, %ld after\n", maps0, maps1);
	printf("memory per parked thread under 8 KiB: %s\n",
	    (rss1 - rss0) * 1024 / n < 8192 ? "yes" : "no");
	if ((rss1 - rss0) * 1024 / n >= 8192)
		printf("  %ld KiB before, %ld KiB after\n", rss0, rss1);
	wake_all(n);
	rss2 = status_kib("VmRSS");
	printf("woken and exited: %ld, threads left %d\n", nwoken,
	    mycpu->gd_num_threads - 1);
	printf("memory given back after the exits: %s\n",
	    rss2 - rss0 < (rss1 - rss0) / 4 ? "yes" : "no");
	if (rss2 - rss0 >= (rss1 - rss0) / 4)
		printf("  %ld KiB before, %ld KiB parked, %ld KiB after\n",
		    rss0, rss1, rss2);
	return (0);
}
