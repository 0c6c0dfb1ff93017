/*
 * Many threads parked at once: 100,000 threads, each blocked on a message
 * port of its own (port and message on its own stack), all alive
 * together. Every stack has its guard region, yet the process must stay
 * far below vm.max_map_count (65530, two mappings per stack allowed
 * 32,7xx threads), and a parked thread must cost little memory (its
 * stack holds memory only where touched). Then each is sent its message,
 * wakes and exits, and once they are gone their stacks' memory is given
 * back.
 *
 *   thr_parked [N]   N threads (default 100000)
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct parked {
	struct lwkt_port port;
	struct lwkt_msg msg;
};

static struct parked **parked;
static int nparked, nwoken;

static void
sleeper(void *arg)
{
	struct parked p;

	lwkt_initport(&p.port, curthread);
	lwkt_initmsg(&p.msg, &p.port, 0);
	parked[(long)arg] = &p;
	++nparked;
	if (lwkt_waitport(&p.port, NULL) != &p.msg)
		printf("sleeper %ld: woken by a stranger\n", (long)arg);
	++nwoken;
}

/* Lines of /proc/self/maps: the process's mappings. */
static int
maps_lines(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	int c, n = 0;

	if (f == NULL)
		return (-1);
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return (n);
}

/* VmRSS of the process, KiB. */
static long
rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;

	if (f == NULL)
		return (-1);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0)
			kib = atol(line + 6);
	fclose(f);
	return (kib);
}

int
main(int ac, char **av)
{
	long n = ac > 1 ? atol(av[1]) : 100000, i;
	long rss0, rss1, rss2;
	int maps0, maps1;

	setvbuf(stdout, NULL, _IONBF, 0);
	uthread_init();
	parked = calloc(n, sizeof(*parked));
	if (parked == NULL)
		return (1);
	rss0 = rss_kib();
	maps0 = maps_lines();
	for (i = 0; i < n; ++i) {
		thread_t td;
		int error;

		error = lwkt_create(sleeper, (void *)i, &td, NULL, 0, -1,
		    "sleeper%ld", i);
		if (error != 0) {
			printf("lwkt_create of thread %ld: error %d\n", i, error);
			return (1);
		}
		td->td_flags &= ~TDF_VERBOSE;
		if (i % 1000 == 999)
			lwkt_yield();	/* the last 1000 run and park */
	}
	lwkt_yield();
	maps1 = maps_lines();
	rss1 = rss_kib();
	printf("parked %d of %ld threads, %d threads on the cpu\n", nparked, n,
	    mycpu->gd_num_threads - 1);
	printf("mappings added: fewer than 1000: %s\n",
	    maps1 - maps0 < 1000 ? "yes" : "no");
	if (maps1 - maps0 >= 1000)
		printf("  %d mappings before, %d after\n", maps0, maps1);
	printf("memory per parked thread under 8 KiB: %s\n",
	    (rss1 - rss0) * 1024 / n < 8192 ? "yes" : "no");
	if ((rss1 - rss0) * 1024 / n >= 8192)
		printf("  %ld KiB before, %ld KiB after\n", rss0, rss1);
	for (i = 0; i < n; ++i)
		lwkt_sendmsg(&parked[i]->port, &parked[i]->msg);
	while (nwoken < n)
		lwkt_yield();
	/* Block: the idle thread frees what the exited threads left. */
	lwkt_deschedule_self();
	lwkt_switch();
	rss2 = rss_kib();
	printf("woken and exited: %d, threads left %d\n", nwoken,
	    mycpu->gd_num_threads - 1);
	printf("memory given back after the exits: %s\n",
	    rss2 - rss0 < (rss1 - rss0) / 4 ? "yes" : "no");
	if (rss2 - rss0 >= (rss1 - rss0) / 4)
		printf("  %ld KiB before, %ld KiB parked, %ld KiB after\n",
		    rss0, rss1, rss2);
	return (0);
}
