/*
 * lwkt_ops -- N of one LWKT operation, for counting instructions per
 * operation with callgrind, which counts the same on a loaded machine as
 * on a quiet one (wall-clock figures on the shared benchmark VM are not):
 *
 *   switch N   two threads calling lwkt_switch() N times each (thr2
 *              pattern: 2N switches)
 *   create N   lwkt_create + first run + exit, stacks from the cache
 *   domsg N    lwkt_domsg round trips to a thread in lwkt_waitport
 *
 * Per operation: the difference of two runs' totals over the difference
 * of their N (start-up and exit cancel out), e.g.
 *
 *   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
 *       ./build/lwkt_ops switch 20000 2>&1 | grep Collected
 *
 * and again with 120000 (docs/benchmarks-history.md, "Threads").
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD_PING	1
#define CMD_QUIT	2

static long n;
static lwkt_port_t srv_port;

static void
switcher(void *arg)
{
	long i;

	(void)arg;
	for (i = 0; i < n; ++i)
		lwkt_switch();
}

static void
tiny(void *arg)
{
	(void)arg;
}

static void
server(void *arg)
{
	lwkt_msg_t msg;
	int cmd;

	(void)arg;
	srv_port = &curthread->td_msgport;
	do {
		msg = lwkt_waitport(srv_port, NULL);
		cmd = msg->ms_cmd;
		msg->u.ms_result += 1;
		lwkt_replymsg(msg, 0);
	} while (cmd != CMD_QUIT);
}

static void
client(void *arg)
{
	struct lwkt_msg msg;
	long i;

	(void)arg;
	lwkt_initmsg(&msg, &curthread->td_msgport, CMD_PING);
	msg.u.ms_result = 0;
	for (i = 0; i < n; ++i)
		lwkt_domsg(srv_port, &msg);
	if (msg.u.ms_result != n) {
		fprintf(stderr, "domsg: %d replies for %ld sends\n",
		    msg.u.ms_result, n);
		exit(1);
	}
	msg.ms_cmd = CMD_QUIT;
	lwkt_domsg(srv_port, &msg);
}

/* Run a and b (both created quiet) until both are done. */
static void
run_pair(void (*a)(void *), void (*b)(void *))
{
	thread_t ta, tb;

	lwkt_create(a, NULL, &ta, NULL, 0, -1, "a");
	lwkt_create(b, NULL, &tb, NULL, 0, -1, "b");
	ta->td_flags &= ~TDF_VERBOSE;
	tb->td_flags &= ~TDF_VERBOSE;
	lwkt_deschedule_self();
	lwkt_switch();
}

int
main(int argc, char **argv)
{
	thread_t td;
	long i;

	if (argc != 3 || (n = atol(argv[2])) <= 0) {
		fprintf(stderr, "usage: lwkt_ops switch|create|domsg N\n");
		return (2);
	}
	uthread_init();
	if (strcmp(argv[1], "switch") == 0) {
		run_pair(switcher, switcher);
	} else if (strcmp(argv[1], "create") == 0) {
		lwkt_schedule_self();
		for (i = 0; i < n; ++i) {
			lwkt_create(tiny, NULL, &td, NULL, 0, -1, "tiny");
			td->td_flags &= ~TDF_VERBOSE;
			lwkt_yield();
		}
		lwkt_deschedule_self();
	} else if (strcmp(argv[1], "domsg") == 0) {
		run_pair(server, client);
	} else {
		fprintf(stderr, "lwkt_ops: unknown operation %s\n", argv[1]);
		return (2);
	}
	return (0);
}
