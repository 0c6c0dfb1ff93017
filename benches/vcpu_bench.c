/*
 * vcpu_bench -- round trip of a message between threads on two virtual
 * cpus (lwkt_domsg to a server blocked in lwkt_waitport on cpu 1), side
 * by side in the same run with
 *
 *   floor    two kernel threads passing a number through two spinning
 *            flags (one cache line each way): about the least a round
 *            trip between two cores costs; a waiter yields its core after
 *            4096 turns, so an oversubscribed machine does not stall it
 *            for a whole time slice;
 *   condvar  a pthread mutex + condition variable ping-pong (the classic
 *            blocking hand-off; 1/20 of the rounds, once).
 *
 * The crossbeam-channel bounded(1) peer is a Rust program
 * (examples/bench_xbeam_pingpong.rs) that `make bench-vcpu` runs right
 * after. Every round trip is timed on its own (one clock read per round
 * trip, ~20-30 ns of it in every figure) and every reply is checked.
 * domsg and the floor run REPS times, taking turns; each repetition prints
 * p50, p99, p99.9, the largest and the mean, in ns, and p99.9 / p50.
 * Given a file name, the program writes the median domsg and floor p50
 * there (`domsg_p50`, `floor_p50` lines) for the crossbeam run's ratios.
 *
 * Usage: vcpu_bench [scale [reps [results-file]]]   (scale 1 = 200,000
 * round trips per repetition; reps 5 by default)
 */
#define _GNU_SOURCE
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

#define MAXREPS		99

static long rounds;
static double *samples;		/* seconds, one per timed round trip */

/* Close round trip i (untimed while i < 0), which began at *t0. */
static inline void
sample(long i, double *t0)
{
	double t1 = now();

	if (i >= 0)
		samples[i] = t1 - *t0;
	*t0 = t1;
}

/* ---- libcaps: domsg between cpu 0 and cpu 1 ------------------------- */

#define CMD_PING	1
#define CMD_QUIT	2

static thread_t server_td;

static void
server(void *arg)
{
	lwkt_msg_t msg;
	int cmd;

	(void)arg;
	rel_mplock();
	do {
		msg = lwkt_waitport(&curthread->td_msgport, NULL);
		/*
		 * Read what the message says before replying: once replied it
		 * belongs to the client, which may already have changed it
		 * (its next command) by the time this thread looks again.
		 */
		cmd = msg->ms_cmd;
		msg->u.ms_result = 3 * msg->u.ms_result + 1;
		lwkt_replymsg(msg, 0);
	} while (cmd != CMD_QUIT);
}

static void
client(void *arg)
{
	struct lwkt_msg msg;
	long i, warm = rounds / 10;
	double t0 = now();

	(void)arg;
	rel_mplock();
	lwkt_initmsg(&msg, &curthread->td_msgport, CMD_PING);
	for (i = -warm; i < rounds; ++i) {
		msg.u.ms_result = (int)i;
		lwkt_domsg(&server_td->td_msgport, &msg);
		if (msg.u.ms_result != 3 * (int)i + 1) {
			fprintf(stderr, "domsg: bad reply at %ld\n", i);
			exit(1);
		}
		sample(i, &t0);
	}
	msg.ms_cmd = CMD_QUIT;
	lwkt_domsg(&server_td->td_msgport, &msg);
}

static struct result
bench_domsg(int cpu)
{
	thread_t c;

	lwkt_create(server, NULL, &server_td, NULL, TDF_STOPREQ, cpu, "server");
	lwkt_create(client, NULL, &c, NULL, TDF_STOPREQ, -1, "client");
	server_td->td_flags &= ~TDF_VERBOSE;
	c->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(server_td);
	lwkt_schedule(c);
	lwkt_deschedule_self();
	lwkt_switch();
	return (summarize(samples, rounds));
}

/* ---- floor: two spinning flags ------------------------------------------ */

static _Atomic long fl_req __attribute__((aligned(64)));
static _Atomic long fl_rep __attribute__((aligned(64)));

/* Wait until *flag holds something other than `old`; return it. */
static long
spin_until_not(_Atomic long *flag, long old)
{
	long v;
	int turns = 0;

	while ((v = atomic_load_explicit(flag, memory_order_acquire)) == old) {
		if (++turns == 4096) {
			sched_yield();
			turns = 0;
		}
		__builtin_ia32_pause();
	}
	return (v);
}

/* Answers request v (> 0) with 3v + 1; 0 stops it. */
static void *
fl_server(void *arg)
{
	long last = -1, v;

	(void)arg;
	while ((v = spin_until_not(&fl_req, last)) != 0) {
		atomic_store_explicit(&fl_rep, 3 * v + 1, memory_order_release);
		last = v;
	}
	return (NULL);
}

static struct result
bench_floor(void)
{
	pthread_t th;
	long i, warm = rounds / 10, v;
	double t0;

	atomic_store(&fl_req, -1);
	atomic_store(&fl_rep, -1);
	pthread_create(&th, NULL, fl_server, NULL);
	t0 = now();
	for (i = -warm; i < rounds; ++i) {
		long req = i + warm + 1, old = atomic_load(&fl_rep);

		atomic_store_explicit(&fl_req, req, memory_order_release);
		v = spin_until_not(&fl_rep, old);
		if (v != 3 * req + 1) {
			fprintf(stderr, "floor: bad reply at %ld\n", i);
			exit(1);
		}
		sample(i, &t0);
	}
	atomic_store_explicit(&fl_req, 0, memory_order_release);
	pthread_join(th, NULL);
	return (summarize(samples, rounds));
}

/* ---- pthread mutex + condvar ping-pong ----------------------------------- */

static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv_req = PTHREAD_COND_INITIALIZER;
static pthread_cond_t cv_rep = PTHREAD_COND_INITIALIZER;
static long req_val, rep_val;
static int have_req, have_rep, quit;

static void *
cv_server(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mtx);
	for (;;) {
		while (!have_req && !quit)
			pthread_cond_wait(&cv_req, &mtx);
		if (quit)
			break;
		have_req = 0;
		rep_val = 3 * req_val + 1;
		have_rep = 1;
		pthread_cond_signal(&cv_rep);
	}
	pthread_mutex_unlock(&mtx);
	return (NULL);
}

static struct result
bench_condvar(void)
{
	pthread_t th;
	long i, n = rounds / 20;
	double t0;

	pthread_create(&th, NULL, cv_server, NULL);
	pthread_mutex_lock(&mtx);
	t0 = now();
	for (i = 0; i < n; ++i) {
		req_val = i;
		have_req = 1;
		pthread_cond_signal(&cv_req);
		while (!have_rep)
			pthread_cond_wait(&cv_rep, &mtx);
		have_rep = 0;
		if (rep_val != 3 * i + 1) {
			fprintf(stderr, "condvar: bad reply at %ld\n", i);
			exit(1);
		}
		sample(i, &t0);
	}
	quit = 1;
	pthread_cond_signal(&cv_req);
	pthread_mutex_unlock(&mtx);
	pthread_join(th, NULL);
	return (summarize(samples, n));
}

/* ---- report ------------------------------------------------------------- */

static void
print_result(const char *rep, const char *what, struct result r)
{
	printf("%-4s %-28s %9.0f %9.0f %9.0f %10.0f %9.0f %9.1f\n", rep, what,
	    r.p50 * 1e3, r.p99 * 1e3, r.p999 * 1e3, r.max * 1e3, r.mean * 1e3,
	    r.p999 / r.p50);
}

static double
median_p50(const struct result *r, int n)
{
	double v[MAXREPS];
	int i;

	for (i = 0; i < n; ++i)
		v[i] = r[i].p50;
	qsort(v, n, sizeof(v[0]), cmpd);
	return (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
}

int
main(int argc, char **argv)
{
	double scale = argc > 1 ? atof(argv[1]) : 1.0;
	int reps = argc > 2 ? atoi(argv[2]) : 5;
	static struct result dm[MAXREPS], fl[MAXREPS];
	struct result cv;
	char rep[16];
	int cpu, r;

	if (!(scale > 0))
		scale = 1.0;
	if (reps < 1 || reps > MAXREPS)
		reps = 5;
	rounds = (long)(200000 * scale);
	if (rounds < 1000)
		rounds = 1000;
	samples = malloc(rounds * sizeof(samples[0]));
	if (samples == NULL) {
		perror("vcpu_bench: samples");
		return (1);
	}
	/*
	 * Touch every page of the samples now: the first repetition would
	 * otherwise take a page fault every 512 round trips (some 400 in
	 * all at scale 0.5, a few microseconds each on a VM), enough to
	 * make its p99.9 alone look like stalls. (Not with zeros: the
	 * compiler would make malloc + memset a calloc, which touches
	 * nothing.)
	 */
	memset(samples, 0xff, rounds * sizeof(samples[0]));
	uthread_init();
	cpu = caps_fork_vcpu();
	for (r = 0; r < reps; ++r) {
		dm[r] = bench_domsg(cpu);
		fl[r] = bench_floor();
	}
	cv = bench_condvar();

	printf("round trip between two cpus/threads, ns; %ld round trips a repetition\n",
	    rounds);
	printf("%-4s %-28s %9s %9s %9s %10s %9s %9s\n", "rep", "measure", "p50",
	    "p99", "p99.9", "max", "mean", "p99.9/p50");
	for (r = 0; r < reps; ++r) {
		snprintf(rep, sizeof(rep), "%d", r + 1);
		print_result(rep, "lwkt_domsg, cpu 0 -> cpu 1", dm[r]);
		print_result(rep, "spinning flags (floor)", fl[r]);
	}
	print_result("-", "pthread mutex+condvar", cv);
	printf("median p50: lwkt_domsg %.0f ns, floor %.0f ns (domsg / floor %.2fx)\n",
	    median_p50(dm, reps) * 1e3, median_p50(fl, reps) * 1e3,
	    median_p50(dm, reps) / median_p50(fl, reps));
	if (argc > 3) {
		FILE *f = fopen(argv[3], "w");

		if (f == NULL) {
			perror(argv[3]);
			return (1);
		}
		fprintf(f, "domsg_p50 %.3f\nfloor_p50 %.3f\n",
		    median_p50(dm, reps) * 1e3, median_p50(fl, reps) * 1e3);
		fclose(f);
	}
	return (0);
}
