/*
 * fcontext_peer -- Boost.Context's fcontext (jump_fcontext/make_fcontext of
 * libboost_context, Debian's libboost-context-dev), the peer column of
 * ctxsw_bench, measured the way ctxsw_bench measures LWKT threads:
 *
 *   switch   two contexts jumping to each other in turn; per jump
 *   create   make_fcontext on one reused stack + first run + exit (the
 *            new context jumps back and is never resumed); per thread
 *   handoff  a message round trip: the client queues a message on the
 *            server's queue and jumps to the server, which takes it,
 *            answers, queues it on the reply queue and jumps back; per
 *            round trip (the peer of the same-cpu lwkt_domsg)
 *
 * Boost declares the two functions extern "C" (boost/context/detail/
 * fcontext.hpp), so plain C can call them; on x86_64 the two-pointer
 * transfer_t comes back in rax:rdx, as for any such C struct.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_util.h"
#include "fcontext_peer.h"

typedef void *fcontext_t;
typedef struct {
	fcontext_t	fctx;	/* the context that jumped here */
	void		*data;	/* what it passed */
} transfer_t;

transfer_t jump_fcontext(fcontext_t const to, void *vp);
fcontext_t make_fcontext(void *sp, size_t size, void (*fn)(transfer_t));

#define FX_STACK	65536

static char stack_a[FX_STACK] __attribute__((aligned(64)));
static char stack_b[FX_STACK] __attribute__((aligned(64)));

/* The stack grows down: make_fcontext takes its top. */
static fcontext_t
fx_make(char *stack, void (*fn)(transfer_t))
{
	return (make_fcontext(stack + FX_STACK, FX_STACK, fn));
}

/* ---- switch ------------------------------------------------------------ */

static void
sw_body(transfer_t t)
{
	for (;;)
		t = jump_fcontext(t.fctx, NULL);
}

double
fcontext_switch(long n)
{
	transfer_t t = { fx_make(stack_a, sw_body), NULL };
	double t0;
	long i;

	t = jump_fcontext(t.fctx, NULL);	/* started: now it loops */
	t0 = now_ns();
	for (i = 0; i < n; ++i)
		t = jump_fcontext(t.fctx, NULL);
	return ((now_ns() - t0) / (2.0 * n));
}

/* ---- create + first run + exit ------------------------------------------ */

static long cr_runs;

static void
cr_body(transfer_t t)
{
	++cr_runs;
	jump_fcontext(t.fctx, NULL);	/* exit: nobody resumes this one */
}

double
fcontext_create(long n)
{
	double t0;
	long i;

	cr_runs = 0;
	t0 = now_ns();
	for (i = 0; i < n; ++i)
		jump_fcontext(fx_make(stack_b, cr_body), NULL);
	t0 = (now_ns() - t0) / n;
	if (cr_runs != n) {
		fprintf(stderr, "fcontext create: %ld of %ld contexts ran\n", cr_runs, n);
		exit(1);
	}
	return (t0);
}

/* ---- hand-off through a message queue ----------------------------------- */

struct fx_msg {
	struct fx_msg	*next;
	long		val;
};

struct fx_queue {
	struct fx_msg	*head, **tailp;
};

static struct fx_queue srv_q = { NULL, &srv_q.head };
static struct fx_queue rep_q = { NULL, &rep_q.head };

static inline void
fx_put(struct fx_queue *q, struct fx_msg *m)
{
	m->next = NULL;
	*q->tailp = m;
	q->tailp = &m->next;
}

static inline struct fx_msg *
fx_get(struct fx_queue *q)
{
	struct fx_msg *m = q->head;

	if (m != NULL && (q->head = m->next) == NULL)
		q->tailp = &q->head;
	return (m);
}

static void
srv_body(transfer_t t)
{
	struct fx_msg *m;

	for (;;) {
		while ((m = fx_get(&srv_q)) != NULL) {
			m->val = 3 * m->val + 1;
			fx_put(&rep_q, m);
		}
		t = jump_fcontext(t.fctx, NULL);
	}
}

double
fcontext_handoff(long n)
{
	struct fx_msg msg, *m;
	fcontext_t srv = fx_make(stack_a, srv_body);
	double t0;
	long i;

	t0 = now_ns();
	for (i = 0; i < n; ++i) {
		msg.val = i;
		fx_put(&srv_q, &msg);
		srv = jump_fcontext(srv, NULL).fctx;
		m = fx_get(&rep_q);
		if (m != &msg || m->val != 3 * i + 1) {
			fprintf(stderr, "fcontext handoff: bad reply at %ld\n", i);
			exit(1);
		}
	}
	return ((now_ns() - t0) / n);
}
