/*
 * lwkt_hold and lwkt_rele from another cpu: a thread of cpu 1 holds each
 * of a series of threads of cpu 0 while it runs, and drops the reference
 * around the time the thread exits, while cpu 0 keeps creating threads
 * that exit at once (so its cache of exited threads is taken from and
 * given to all the time). A release that put the exited thread in cpu
 * 0's cache from cpu 1 raced with cpu 0's own use of that cache: two live
 * threads with one structure, a corrupted list, a crash or a hang.
 *
 * Every thread of cpu 0 notes its structure in a table of the live ones
 * as it starts and takes it out as it ends: a structure seen twice is
 * counted as reused while live. Prints the rounds and the reuses (0).
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/thread2.h>

#include <stdio.h>
#include <stdlib.h>

#include "quiet.h"

#define ROUNDS	20000
#define SLOTS	64

static thread_t handoff;	/* a held thread's structure, for cpu 1 */
static int held;		/* cpu 1 holds it */
static int released;		/* rounds cpu 1 has released */
static int finished;		/* held threads that ended */
static thread_t live[SLOTS];	/* cpu 0 only */
static int reused;

static void
note_live(thread_t td)
{
	int i, free = -1;

	for (i = 0; i < SLOTS; ++i) {
		if (live[i] == td)
			++reused;
		else if (live[i] == NULL && free < 0)
			free = i;
	}
	if (free < 0) {
		fprintf(stderr, "vcpu_rele_xcpu: more than %d live threads\n", SLOTS);
		exit(2);
	}
	live[free] = td;
}

static void
note_dead(thread_t td)
{
	int i;

	for (i = 0; i < SLOTS; ++i)
		if (live[i] == td)
			live[i] = NULL;
}

/* A thread of cpu 0 that cpu 1 holds while it runs. */
static void
heldone(void *arg)
{
	thread_t self = curthread;

	(void)arg;
	note_live(self);
	__atomic_store_n(&handoff, self, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&held, __ATOMIC_ACQUIRE))
		lwkt_yield();
	__atomic_store_n(&held, 0, __ATOMIC_RELAXED);
	note_dead(self);
	__atomic_add_fetch(&finished, 1, __ATOMIC_RELEASE);
}

/* A thread of cpu 0 that exits at once. */
static void
churn(void *arg)
{
	(void)arg;
	note_live(curthread);
	note_dead(curthread);
}

/* cpu 1: hold each thread handed over, release it as it exits. */
static void
holder(void *arg)
{
	thread_t td;
	unsigned seed = 1;
	int i, k, spin;

	(void)arg;
	rel_mplock();
	for (i = 0; i < ROUNDS; ++i) {
		while ((td = __atomic_exchange_n(&handoff, NULL, __ATOMIC_ACQUIRE)) == NULL)
			;
		lwkt_hold(td);
		__atomic_store_n(&held, 1, __ATOMIC_RELEASE);
		/* Release before, during or after the exit. */
		seed = seed * 1103515245 + 12345;
		spin = (seed >> 16) % 2000;
		for (k = 0; k < spin; ++k)
			__asm__ __volatile__("" ::: "memory");
		lwkt_rele(td);
		__atomic_store_n(&released, i + 1, __ATOMIC_RELEASE);
	}
}

int
main(void)
{
	int i, cpu;

	uthread_init();
	cpu = caps_fork_vcpu();
	rel_mplock();
	start_quiet(holder, NULL, cpu, "holder");
	for (i = 0; i < ROUNDS; ++i) {
		start_quiet(heldone, NULL, -1, "heldone");
		/* Churn cpu 0's cache until the held thread ended and was released. */
		while (__atomic_load_n(&finished, __ATOMIC_ACQUIRE) < i + 1 ||
		    __atomic_load_n(&released, __ATOMIC_ACQUIRE) < i + 1) {
			start_quiet(churn, NULL, -1, "churn");
			lwkt_yield();
		}
	}
	/* Let the last releases' work on cpu 0 (if any) run, then count. */
	lwkt_yield();
	printf("rounds %d, reused while live %d\n", ROUNDS, reused);
	return (reused != 0);
}
