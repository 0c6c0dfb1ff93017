/*
 * A cpu whose next thread needs the MP lock, held by another cpu, but
 * which always has some other thread to run (one that dropped the lock)
 * must still get the lock when the holder yields: it waits for the lock
 * as an idle cpu would. Here cpu 1 runs "busy" (no MP lock, yields until
 * done) and "needy" (born holding the MP lock, sets done), while main on
 * cpu 0 holds the lock and yields until done. Cpu 1 never went idle, so
 * it never said it waited, main's yields never handed the lock over,
 * and the program spun for ever; it gives up after 20 s.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/thread2.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "quiet.h"

static volatile int busy_running, done, needy_cpu = -1;

static void
busy(void *arg)
{
	(void)arg;
	rel_mplock();
	busy_running = 1;
	while (!done)
		lwkt_yield();
}

static void
needy(void *arg)
{
	(void)arg;
	needy_cpu = mycpu->gd_cpuid;
	done = 1;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec + ts.tv_nsec / 1e9);
}

int
main(void)
{
	double t0;
	long n;
	int cpu;

	setvbuf(stdout, NULL, _IONBF, 0);
	cpu = caps_fork_vcpu();
	start_quiet(busy, NULL, cpu, "busy");
	/* busy needs the lock once, to start and drop it: main yields it. */
	while (!busy_running)
		lwkt_yield();
	/* main holds the lock again (it needs it to run). */
	start_quiet(needy, NULL, cpu, "needy");
	t0 = now();
	for (n = 0; !done; ++n) {
		lwkt_yield();
		if ((n & 1023) == 0 && now() - t0 > 20) {
			printf("needy did not get the MP lock in 20 s\n");
			exit(1);
		}
	}
	printf("needy ran on cpu %d\n", needy_cpu);
	return (0);
}
