/*
 * Wait queues and tokens.
 *
 * Wait queue: three sleepers block on one queue; lwkt_signal(w, 1) wakes
 * exactly the oldest, lwkt_signal(w, -1) the rest, in order. A sleeper
 * whose generation is stale returns from lwkt_block() at once.
 *
 * Tokens (December 2003 API): lwkt_gettoken() returns increasing
 * generations, lwkt_gentoken() returns 0 while nobody else acquired the
 * token and -1 (updating the generation) after someone did, including a
 * thread that acquired it while the first one was blocked.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdio.h>
#include <stdlib.h>

static lwkt_wait wq;
static lwkt_token tok;
static int woken;

static void
sleeper(void *arg)
{
	int gen = wq.wa_gen;

	lwkt_block(&wq, "sleeper", &gen);
	printf("%s woke (%d woken before), gen %d\n", (const char *)arg,
	    woken++, gen);
}

static void
stale(void *arg)
{
	int gen = wq.wa_gen - 1;

	(void)arg;
	lwkt_block(&wq, "stale", &gen);
	printf("stale returned at once, gen now %d\n", gen == wq.wa_gen);
}

static void
taker(void *arg)
{
	(void)arg;
	printf("taker: gettoken -> %d\n", lwkt_gettoken(&tok));
	lwkt_reltoken(&tok);
}

static void
holder(void *arg)
{
	int gen, gen2, r;

	(void)arg;
	gen = lwkt_gettoken(&tok);
	printf("holder: gettoken -> %d\n", gen);
	gen2 = gen;
	printf("holder: gentoken unchanged -> %d\n", lwkt_gentoken(&tok, &gen2));
	lwkt_yield();		/* taker runs and acquires the token */
	r = lwkt_gentoken(&tok, &gen);
	printf("holder: gentoken after taker -> %d, gen %d\n", r, gen);
	r = lwkt_trytoken(&tok);
	printf("holder: trytoken -> %d, reltoken -> %d\n", r,
	    lwkt_reltoken(&tok));
	lwkt_reltoken(&tok);
}

static void
make(void (*fn)(void *), const char *name)
{
	thread_t td;

	lwkt_create(fn, (void *)name, &td, NULL, 0, -1, "%s", name);
	td->td_flags &= ~TDF_VERBOSE;
}

int
main(void)
{
	uthread_init();
	lwkt_wait_init(&wq);
	make(sleeper, "s1");
	make(sleeper, "s2");
	make(sleeper, "s3");
	lwkt_yield();
	printf("sleepers waiting: %d\n", wq.wa_count);
	make(stale, "stale");
	lwkt_yield();
	lwkt_signal(&wq, 1);
	lwkt_yield();
	printf("after signal 1: %d waiting\n", wq.wa_count);
	lwkt_signal(&wq, -1);
	lwkt_yield();
	printf("after signal all: %d waiting, gen %d\n", wq.wa_count, wq.wa_gen);

	lwkt_inittoken(&tok);
	make(holder, "holder");
	make(taker, "taker");
	lwkt_deschedule_self();
	lwkt_switch();
	lwkt_inittoken(&tok);
	printf("inittoken: gen %d owner %s\n", tok.t_gen,
	    tok.t_cpu == NULL ? "none" : "set");
	return (0);
}
