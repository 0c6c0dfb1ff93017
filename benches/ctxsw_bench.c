/*
 * ctxsw_bench -- LWKT thread costs, side by side with baselines run in the
 * same process: glibc swapcontext(), a minimal assembly switch
 * (callee-saved registers + stack pointer, the least any stack switch can
 * do) and Boost.Context's fcontext (jump_fcontext/make_fcontext, in
 * fcontext_peer.c). Prints ns per operation and the ratios.
 *
 *   lwkt_switch   two threads calling lwkt_switch() in turn (thr2 pattern);
 *                 fcontext: two contexts jumping to each other; once more
 *                 with the two threads in two functions (two call sites)
 *   create        lwkt_create + first run + exit, stacks from the cache;
 *                 fcontext: make_fcontext on a reused stack + run + exit
 *   domsg         lwkt_domsg round trip to a thread blocked in waitport;
 *                 fcontext: a queued message handed to a server context
 *                 and back
 *
 * The three pairs run REPS (3) times, taking turns; each figure is the
 * median, and every repetition is printed. corosensei, the Rust peer, is
 * examples/bench_corosensei.rs, which `make bench-threads` runs right
 * after; given a file name, this program writes its libcaps medians there
 * for that example's ratios.
 *
 * Usage: ctxsw_bench [scale [results-file]]   (scale multiplies the
 * iteration counts: 1 = 2,000,000 switches per thread)
 */
#define _GNU_SOURCE
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <ucontext.h>

#include "fcontext_peer.h"
#include "bench_util.h"

static long iters;

/* ---- baseline 1: swapcontext ------------------------------------------ */

static ucontext_t uc_a, uc_b;

static void
uc_body(void)
{
	for (;;)
		swapcontext(&uc_b, &uc_a);
}

static double
bench_swapcontext(void)
{
	static char stk[65536];
	long i, n = iters / 10;
	double t0;

	getcontext(&uc_b);
	uc_b.uc_stack.ss_sp = stk;
	uc_b.uc_stack.ss_size = sizeof(stk);
	uc_b.uc_link = NULL;
	makecontext(&uc_b, uc_body, 0);
	t0 = now_ns();
	for (i = 0; i < n; ++i)
		swapcontext(&uc_a, &uc_b);
	return ((now_ns() - t0) / (2.0 * n));
}

/* ---- baseline 2: minimal assembly switch ------------------------------- */

/* void bare_switch(void **save_sp, void *load_sp) */
#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".globl bare_switch\n"
    ".type bare_switch,@function\n"
    "bare_switch:\n"
    "\tpushq %rbp\n\tpushq %rbx\n\tpushq %r12\n"
    "\tpushq %r13\n\tpushq %r14\n\tpushq %r15\n"
    "\tmovq %rsp, (%rdi)\n"
    "\tmovq %rsi, %rsp\n"
    "\tpopq %r15\n\tpopq %r14\n\tpopq %r13\n"
    "\tpopq %r12\n\tpopq %rbx\n\tpopq %rbp\n"
    "\tret\n"
    ".size bare_switch, .-bare_switch\n");
#else
#error "bare_switch baseline: x86_64 only"
#endif
void bare_switch(void **save_sp, void *load_sp);

static void *bare_main_sp, *bare_co_sp;

static void
bare_body(void)
{
	for (;;)
		bare_switch(&bare_co_sp, bare_main_sp);
}

static double
bench_bare(void)
{
	static char stk[65536] __attribute__((aligned(16)));
	uintptr_t *sp = (uintptr_t *)(stk + sizeof(stk));
	long i;
	double t0;
	int r;

	*--sp = 0;			/* alignment slot */
	*--sp = (uintptr_t)bare_body;	/* "return" address */
	for (r = 0; r < 6; ++r)
		*--sp = 0;		/* rbp rbx r12 r13 r14 r15 */
	bare_co_sp = sp;
	t0 = now_ns();
	for (i = 0; i < iters; ++i)
		bare_switch(&bare_main_sp, bare_co_sp);
	return ((now_ns() - t0) / (2.0 * iters));
}

/* ---- libcaps ---------------------------------------------------------- */

static double sw_t0, sw_t1;
static int sw_done;

/*
 * arg NULL: the thr2 pattern, both threads calling lwkt_switch() from
 * the same instruction. arg non-NULL: the second thread calls it from
 * another loop, so a switched-in thread returns to another call site
 * than the one the switched-out thread called from (what the cpu's
 * return predictor cannot guess by itself).
 */
static void
switcher(void *arg)
{
	long i;

	if (arg == NULL) {
		for (i = 0; i < iters; ++i)
			lwkt_switch();
	} else {
		for (i = iters; i > 0; --i)
			lwkt_switch();
	}
	if (++sw_done == 2)
		sw_t1 = now_ns();
}

/* Two switching threads; the second one's argument is `second`. */
static double
bench_lwkt_switch(void *second)
{
	thread_t a, b;

	lwkt_create(switcher, NULL, &a, NULL, 0, -1, "sw1");
	lwkt_create(switcher, second, &b, NULL, 0, -1, "sw2");
	a->td_flags &= ~TDF_VERBOSE;
	b->td_flags &= ~TDF_VERBOSE;
	sw_done = 0;
	sw_t0 = now_ns();
	lwkt_deschedule_self();
	lwkt_switch();
	return ((sw_t1 - sw_t0) / (2.0 * iters));
}

static long created_runs;

static void
tiny(void *arg)
{
	(void)arg;
	++created_runs;
}

static double
bench_create(void)
{
	long i, n = iters / 10;
	thread_t td;
	double t0;

	/* main stays runnable; each new thread runs once and exits. */
	lwkt_schedule_self();
	created_runs = 0;
	t0 = now_ns();
	for (i = 0; i < n; ++i) {
		lwkt_create(tiny, NULL, &td, NULL, 0, -1, "tiny");
		td->td_flags &= ~TDF_VERBOSE;
		lwkt_yield();
	}
	t0 = (now_ns() - t0) / n;
	if (created_runs != n) {
		fprintf(stderr, "create: %ld of %ld threads ran\n", created_runs, n);
		exit(1);
	}
	lwkt_deschedule_self();
	return (t0);
}

#define CMD_PING	1
#define CMD_QUIT	2

static lwkt_port_t srv_port;

static void
server(void *arg)
{
	lwkt_msg_t msg;
	int cmd;

	(void)arg;
	srv_port = &curthread->td_msgport;
	do {
		msg = lwkt_waitport(srv_port, NULL);
		cmd = msg->ms_cmd;	/* a replied message is the client's */
		msg->u.ms_result += 1;
		lwkt_replymsg(msg, 0);
	} while (cmd != CMD_QUIT);
}

static double dm_result;

static void
client(void *arg)
{
	struct lwkt_msg msg;
	lwkt_port_t rport = &curthread->td_msgport;
	long i;
	double t0;

	(void)arg;
	lwkt_initmsg(&msg, rport, CMD_PING);
	msg.u.ms_result = 0;
	t0 = now_ns();
	for (i = 0; i < iters; ++i)
		lwkt_domsg(srv_port, &msg);
	dm_result = (now_ns() - t0) / iters;
	if (msg.u.ms_result != iters) {
		fprintf(stderr, "domsg: %d replies for %ld sends\n",
		    msg.u.ms_result, iters);
		exit(1);
	}
	msg.ms_cmd = CMD_QUIT;
	lwkt_domsg(srv_port, &msg);
}

static double
bench_domsg(void)
{
	thread_t s, c;

	lwkt_create(server, NULL, &s, NULL, 0, -1, "server");
	lwkt_create(client, NULL, &c, NULL, 0, -1, "client");
	s->td_flags &= ~TDF_VERBOSE;
	c->td_flags &= ~TDF_VERBOSE;
	lwkt_deschedule_self();
	lwkt_switch();
	return (dm_result);
}

#define REPS	3

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return ((x > y) - (x < y));
}

/* Median of REPS figures (sorts a copy). */
static double
median(const double *v)
{
	double c[REPS];
	int i;

	for (i = 0; i < REPS; ++i)
		c[i] = v[i];
	qsort(c, REPS, sizeof(c[0]), cmp_double);
	return (c[REPS / 2]);
}

static void
print_pair(const char *what, const double *ours, const double *peer)
{
	double m = median(ours), p = median(peer);
	int r;

	printf("%-34s %9.1f %9.1f %8.2fx  ", what, m, p, m / p);
	for (r = 0; r < REPS; ++r)
		printf("%s%.1f/%.1f", r ? ", " : "", ours[r], peer[r]);
	printf("\n");
}

int
main(int argc, char **argv)
{
	double uc, bare, sw2, sw[REPS], cr[REPS], dm[REPS], fsw[REPS], fcr[REPS], fdm[REPS];
	double scale = argc > 1 ? atof(argv[1]) : 1.0;
	int r;

	if (!(scale > 0))
		scale = 1;
	iters = (long)(2000000 * scale);
	if (iters < 1000)
		iters = 1000;
	uthread_init();
	/* warm up: caches, stacks, page faults */
	iters /= 20;
	bench_lwkt_switch(NULL);
	bench_create();
	fcontext_switch(iters);
	fcontext_create(iters / 10);
	fcontext_handoff(iters);
	iters *= 20;

	uc = bench_swapcontext();
	bare = bench_bare();
	sw2 = bench_lwkt_switch(&sw_done);
	for (r = 0; r < REPS; ++r) {
		sw[r] = bench_lwkt_switch(NULL);
		fsw[r] = fcontext_switch(iters);
		cr[r] = bench_create();
		fcr[r] = fcontext_create(iters / 10);
		dm[r] = bench_domsg();
		fdm[r] = fcontext_handoff(iters);
	}

	printf("%-34s %10s %12s\n", "operation", "ns/op", "ratio");
	printf("%-34s %10.1f %12s\n", "swapcontext (one switch)", uc, "1.00 (base)");
	printf("%-34s %10.1f %11.2fx\n", "bare asm switch (one switch)", bare, uc / bare);
	printf("%-34s %10.1f %11.2fx\n", "lwkt_switch, thr2 pattern", median(sw), uc / median(sw));
	printf("%-34s %10.1f %11.2fx\n", "lwkt_switch vs bare asm", median(sw), median(sw) / bare);
	printf("%-34s %10.1f %11.2fx\n", "lwkt_switch, two call sites", sw2, uc / sw2);
	printf("\nagainst Boost.Context fcontext, ns, median of %d (each run libcaps/fcontext)\n", REPS);
	printf("%-34s %9s %9s %9s  %s\n", "operation", "libcaps", "fcontext", "ratio", "runs");
	print_pair("switch, thr2 pattern (per switch)", sw, fsw);
	print_pair("create + first run + exit", cr, fcr);
	print_pair("same-cpu round trip (domsg/handoff)", dm, fdm);
	if (argc > 2) {
		FILE *f = fopen(argv[2], "w");

		if (f == NULL) {
			perror(argv[2]);
			return (1);
		}
		fprintf(f, "switch %.3f\ncreate %.3f\nroundtrip %.3f\n",
		    median(sw), median(cr), median(dm));
		fclose(f);
	}
	return (0);
}
