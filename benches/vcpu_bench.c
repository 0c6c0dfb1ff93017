/*
 * vcpu_bench -- round trip of a message between threads on two virtual
 * cpus (lwkt_domsg to a server blocked in lwkt_waitport on cpu 1), side
 * by side in the same run with a pthread mutex + condition variable
 * ping-pong between two kernel threads (the classic blocking handoff).
 * The crossbeam-channel baseline is a separate Rust program
 * (examples/bench_xbeam_pingpong.rs) run by `make bench` right after.
 * Every reply is checked. Prints ns per round trip.
 *
 * Usage: vcpu_bench [scale]   (scale multiplies the round counts)
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long rounds;

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec * 1e9 + ts.tv_nsec);
}

/* ---- libcaps: domsg between cpu 0 and cpu 1 ------------------------- */

#define CMD_PING	1
#define CMD_QUIT	2

static thread_t server_td;
static double dm_ns;

static void
server(void *arg)
{
	lwkt_msg_t msg;

	(void)arg;
	rel_mplock();
	for (;;) {
		msg = lwkt_waitport(&curthread->td_msgport, NULL);
		msg->u.ms_result = 3 * msg->u.ms_result + 1;
		lwkt_replymsg(msg, 0);
		if (msg->ms_cmd == CMD_QUIT)
			break;
	}
}

static void
client(void *arg)
{
	struct lwkt_msg msg;
	long i, warm = rounds / 10;
	double t0 = 0;

	(void)arg;
	rel_mplock();
	lwkt_initmsg(&msg, &curthread->td_msgport, CMD_PING);
	for (i = -warm; i < rounds; ++i) {
		if (i == 0)
			t0 = now_ns();
		msg.u.ms_result = (int)i;
		lwkt_domsg(&server_td->td_msgport, &msg);
		if (msg.u.ms_result != 3 * (int)i + 1) {
			fprintf(stderr, "domsg: bad reply at %ld\n", i);
			exit(1);
		}
	}
	dm_ns = (now_ns() - t0) / rounds;
	msg.ms_cmd = CMD_QUIT;
	lwkt_domsg(&server_td->td_msgport, &msg);
}

static double
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
	return (dm_ns);
}

/* ---- baseline: pthread mutex + condvar ping-pong --------------------- */

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

static double
bench_condvar(void)
{
	pthread_t th;
	long i, n = rounds / 20;
	double t0;

	pthread_create(&th, NULL, cv_server, NULL);
	t0 = now_ns();
	pthread_mutex_lock(&mtx);
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
	}
	quit = 1;
	pthread_cond_signal(&cv_req);
	pthread_mutex_unlock(&mtx);
	t0 = (now_ns() - t0) / n;
	pthread_join(th, NULL);
	return (t0);
}

int
main(int argc, char **argv)
{
	double scale = argc > 1 ? atof(argv[1]) : 1.0;
	double dm, cv;
	int cpu;

	if (scale <= 0)
		scale = 1.0;
	rounds = (long)(200000 * scale);
	uthread_init();
	cpu = caps_fork_vcpu();
	dm = bench_domsg(cpu);
	cv = bench_condvar();
	printf("%-44s %10s\n", "round trip between two cpus/threads", "ns");
	printf("%-44s %10.1f\n", "lwkt_domsg, cpu 0 -> cpu 1", dm);
	printf("%-44s %10.1f\n", "pthread mutex+condvar ping-pong", cv);
	return (0);
}
