/*
 * 10,000 threads created and exited in waves of 1,000: main creates a
 * wave, blocks, and is resumed by the idle loop when the whole wave has
 * exited. Each thread yields once in the middle, so all of a wave are
 * alive at the same time. After each wave the cpu's thread counts must be
 * back to main alone and the cache of exited threads (with their stacks)
 * trimmed to its limit.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdio.h>
#include <stdlib.h>

#define WAVES	10
#define PERWAVE	1000

static int started, finished, maxalive, alive;

static void
worker(void *arg)
{
	long n = (long)arg;
	volatile char big[2048];	/* touch some stack */

	big[0] = (char)n;
	big[sizeof(big) - 1] = (char)n;
	++started;
	if (++alive > maxalive)
		maxalive = alive;
	lwkt_yield();
	if (big[0] != (char)n || big[sizeof(big) - 1] != (char)n)
		printf("worker %ld: stack corrupted\n", n);
	--alive;
	++finished;
}

int
main(void)
{
	int w, i;

	uthread_init();
	for (w = 0; w < WAVES; ++w) {
		started = finished = maxalive = 0;
		for (i = 0; i < PERWAVE; ++i) {
			thread_t td;

			lwkt_create(worker, (void *)(long)(w * PERWAVE + i), &td,
			    NULL, 0, -1, "w%d.%d", w, i);
			td->td_flags &= ~TDF_VERBOSE;
		}
		lwkt_deschedule_self();
		lwkt_switch();
		printf("wave %d: started %d finished %d max alive %d, "
		    "threads left %d (system %d), cached %d\n", w, started,
		    finished, maxalive, mycpu->gd_num_threads,
		    mycpu->gd_sys_threads, mycpu->gd_tdfreecount);
	}
	return (0);
}
