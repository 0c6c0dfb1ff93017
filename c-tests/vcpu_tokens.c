/*
 * Tokens, wait queues and the MP lock across two virtual cpus.
 *
 *  1. A token owned by cpu 0: a thread on cpu 1 fails lwkt_trytoken(),
 *     then gets it with lwkt_gettoken() (cpu 0 hands it over by IPI);
 *     main on cpu 0 then finds it lost (lwkt_gentoken() returns -1) and
 *     takes it back.
 *  2. Contention: one thread per cpu, ITER times each: take the token,
 *     check nobody else is inside, increment a shared counter in several
 *     non-atomic steps, release, switch. The counter must be exact.
 *  3. The same with the MP lock (get_mplock / rel_mplock).
 *  4. Wait queues: a value handed from cpu 0 to cpu 1 and acknowledged
 *     back ITER times through lwkt_signal() / lwkt_block() generations.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdio.h>
#include <stdlib.h>

#define ITER	20000

static int vcpu;
static lwkt_token tok1, tok2;
static lwkt_wait wq_val, wq_ack;
static volatile int inside, counter, bad, started;
static volatile int value, ack;
static int try_result, remote_gen;

static thread_t
spawn(void (*func)(void *), void *arg, int cpu, const char *name)
{
	thread_t td;

	lwkt_create(func, arg, &td, NULL, TDF_STOPREQ, cpu, "%s", name);
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(td);
	return (td);
}

static void
wait_children(void)
{
	lwkt_deschedule_self();
	lwkt_switch();
}

static void
taker(void *arg)
{
	(void)arg;
	rel_mplock();
	try_result = lwkt_trytoken(&tok1);
	remote_gen = lwkt_gettoken(&tok1);
	lwkt_reltoken(&tok1);
}

/* Both threads start together, so that they really contend. */
static void
barrier(void)
{
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < 2)
		lwkt_switch();
}

static void
bump(void)
{
	int v, k;

	if (inside)
		++bad;
	inside = 1;
	v = counter;
	for (k = 0; k < 50; ++k)	/* widen the window */
		__asm__ __volatile__("" ::: "memory");
	counter = v + 1;
	inside = 0;
}

static void
token_worker(void *arg)
{
	int i;

	(void)arg;
	rel_mplock();
	barrier();
	for (i = 0; i < ITER; ++i) {
		lwkt_gettoken(&tok2);
		bump();
		lwkt_reltoken(&tok2);
		lwkt_switch();
	}
}

static void
mp_worker(void *arg)
{
	int i;

	(void)arg;
	rel_mplock();
	barrier();
	for (i = 0; i < ITER; ++i) {
		get_mplock();
		if (curthread->td_mpcount != 1 || mp_lock != (int)mycpu->gd_cpuid)
			++bad;
		bump();
		rel_mplock();
		lwkt_switch();
	}
}

static void
wq_waiter(void *arg)
{
	int i, gen;

	(void)arg;
	rel_mplock();
	for (i = 1; i <= ITER; ++i) {
		gen = wq_val.wa_gen;
		while (value != i)
			lwkt_block(&wq_val, "value", &gen);
		ack = i;
		lwkt_signal(&wq_ack, 1);
	}
}

static void
wq_signaller(void *arg)
{
	int i, gen;

	(void)arg;
	rel_mplock();
	for (i = 1; i <= ITER; ++i) {
		gen = wq_ack.wa_gen;
		value = i;
		lwkt_signal(&wq_val, 1);
		while (ack != i)
			lwkt_block(&wq_ack, "ack", &gen);
	}
}

int
main(void)
{
	int gen, i;

	uthread_init();
	vcpu = caps_fork_vcpu();

	lwkt_inittoken(&tok1);
	gen = lwkt_gettoken(&tok1);
	spawn(taker, NULL, vcpu, "taker");
	wait_children();
	printf("trytoken from cpu 1 while cpu 0 owns it: %d\n", try_result);
	printf("gettoken from cpu 1: owner now cpu %d\n",
	    tok1.t_cpu == globaldata_find(vcpu) ? vcpu : -1);
	i = lwkt_gentoken(&tok1, &gen);
	printf("gentoken on cpu 0: %d (lost), owner cpu %d\n", i,
	    tok1.t_cpu == mycpu ? 0 : -1);

	lwkt_inittoken(&tok2);
	counter = bad = started = 0;
	spawn(token_worker, NULL, 0, "tok0");
	spawn(token_worker, NULL, vcpu, "tok1");
	wait_children();
	printf("token: counter %d of %d, overlaps %d\n", counter, 2 * ITER, bad);

	counter = bad = started = 0;
	spawn(mp_worker, NULL, 0, "mp0");
	spawn(mp_worker, NULL, vcpu, "mp1");
	wait_children();
	printf("mplock: counter %d of %d, overlaps %d\n", counter, 2 * ITER, bad);
	printf("main holds the MP lock again: %d (mpcount %d)\n",
	    mp_lock == 0, curthread->td_mpcount);

	lwkt_wait_init(&wq_val);
	lwkt_wait_init(&wq_ack);
	spawn(wq_waiter, NULL, vcpu, "waiter");
	spawn(wq_signaller, NULL, 0, "signaller");
	wait_children();
	printf("wait queues: %d values acknowledged, last %d\n", ack, value);
	return (0);
}
