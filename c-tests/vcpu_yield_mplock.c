/*
 * Two threads on two virtual cpus ping-pong through a flag, each waiting
 * for its turn with `while (turn != me) lwkt_yield();`, written as a
 * newcomer would: neither drops the MP lock every thread is born with.
 * A yield by the holder while the other cpu waits for the lock hands it
 * over, so the program completes (it used to spin forever).
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/thread2.h>

#include <stdio.h>

#define ROUNDS	2000

static volatile int turn;
static int cpu_of[2];

static void
player(void *arg)
{
	int me = (int)(long)arg, i;

	cpu_of[me] = mycpu->gd_cpuid;
	for (i = 0; i < ROUNDS; ++i) {
		while (turn != me)
			lwkt_yield();
		turn = !me;
	}
}

int
main(void)
{
	thread_t td;
	int cpu;

	uthread_init();
	cpu = caps_fork_vcpu();
	lwkt_create(player, (void *)0L, &td, NULL, TDF_STOPREQ, 0, "ping");
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(td);
	lwkt_create(player, (void *)1L, &td, NULL, TDF_STOPREQ, cpu, "pong");
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(td);
	lwkt_deschedule_self();
	lwkt_switch();
	printf("%d rounds, ping on cpu %d, pong on cpu %d\n", ROUNDS,
	    cpu_of[0], cpu_of[1]);
	return (0);
}
