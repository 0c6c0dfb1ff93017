/*
 * Hand-offs between two virtual cpus that ThreadSanitizer must see as
 * synchronisation (tests/sanitizers.sh, built with -fsanitize=thread):
 *
 *  - messages with a payload, sent by a thread on cpu 0 to a server on
 *    cpu 1 with lwkt_domsg() and lwkt_sendmsg() + lwkt_waitmsg(): the
 *    server reads the payload the client wrote, the client reads the
 *    answer the server wrote (put -> receive, reply -> wait);
 *  - lwkt_send_ipiq(): data written before the send, read by the IPI
 *    function on the other cpu (IPI send -> run);
 *  - a counter protected by a token, incremented by threads on both cpus
 *    (token hand-over).
 *
 * Correct: prints "pingpong ok". With the argument "race", main on cpu 0
 * and a thread it starts on cpu 1 both increment a plain global with no
 * synchronisation between the two: a real race the sanitizer must report.
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

#define ROUNDS	2000
#define CMD_WORK 1
#define CMD_QUIT 2

struct work {
	struct lwkt_msg msg;
	int payload[8];
	int answer;
};

static lwkt_token tok;
static int counter, racy, race, ipi_data, ipi_seen;
static volatile int done;
static thread_t server_td;

static void
server(void *arg)
{
	struct work *w;
	int k, sum;

	(void)arg;
	rel_mplock();
	for (;;) {
		w = lwkt_waitport(&curthread->td_msgport, NULL);
		if (w->msg.ms_cmd == CMD_QUIT) {
			lwkt_replymsg(&w->msg, 0);
			break;
		}
		for (sum = 0, k = 0; k < 8; ++k)
			sum += w->payload[k];
		w->answer = sum;
		memset(w->payload, 0, sizeof(w->payload));
		lwkt_replymsg(&w->msg, 0);
	}
	__atomic_add_fetch(&done, 1, __ATOMIC_SEQ_CST);
}

static void
ipi_func(void *arg)
{
	if (ipi_data == 42 && arg == &ipi_data)
		ipi_seen = 1;
	ipi_data = 0;
}

static void
tokloop(void *arg)
{
	int k;

	(void)arg;
	rel_mplock();
	for (k = 0; k < ROUNDS; ++k) {
		lwkt_gettoken(&tok);
		++counter;
		lwkt_reltoken(&tok);
		lwkt_yield();
	}
	__atomic_add_fetch(&done, 1, __ATOMIC_SEQ_CST);
}

static void
racer(void *arg)
{
	(void)arg;
	rel_mplock();
	++racy;
	__atomic_add_fetch(&done, 1, __ATOMIC_SEQ_CST);
}

static int
exchange(struct lwkt_port *reply, int n, int async)
{
	struct work w;
	int k, want = 0;

	lwkt_initmsg(&w.msg, reply, CMD_WORK);
	for (k = 0; k < 8; ++k) {
		w.payload[k] = n + k;
		want += n + k;
	}
	if (async) {
		lwkt_sendmsg(&server_td->td_msgport, &w.msg);
		lwkt_waitmsg(&w.msg);
	} else {
		lwkt_domsg(&server_td->td_msgport, &w.msg);
	}
	return (w.answer == want && w.payload[3] == 0);
}

int
main(int argc, char **argv)
{
	struct lwkt_port reply;
	struct work quit;
	thread_t td;
	int n, bad = 0;

	race = argc > 1 && strcmp(argv[1], "race") == 0;
	uthread_init();
	if (caps_fork_vcpu() != 1) {
		printf("no second cpu\n");
		return (1);
	}
	rel_mplock();
	if (race) {
		lwkt_create(racer, NULL, &td, NULL, 0, 1, "racer");
		++racy;
		while (__atomic_load_n(&done, __ATOMIC_SEQ_CST) < 1)
			lwkt_yield();
		printf("race done\n");
		return (0);
	}
	lwkt_create(server, NULL, &server_td, NULL, 0, 1, "server");
	server_td->td_flags &= ~TDF_VERBOSE;
	lwkt_initport(&reply, curthread);
	for (n = 0; n < ROUNDS; ++n)
		bad += !exchange(&reply, n, n & 1);

	ipi_data = 42;
	lwkt_send_ipiq(1, ipi_func, &ipi_data);

	lwkt_create(tokloop, NULL, &td, NULL, 0, 0, "tok0");
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_create(tokloop, NULL, &td, NULL, 0, 1, "tok1");
	td->td_flags &= ~TDF_VERBOSE;

	lwkt_initmsg(&quit.msg, &reply, CMD_QUIT);
	lwkt_domsg(&server_td->td_msgport, &quit.msg);
	while (__atomic_load_n(&done, __ATOMIC_SEQ_CST) < 3)
		lwkt_yield();
	lwkt_gettoken(&tok);
	n = counter;
	lwkt_reltoken(&tok);
	if (bad != 0 || n != 2 * ROUNDS || ipi_seen != 1) {
		printf("pingpong bad: %d bad, counter %d, ipi %d\n", bad, n, ipi_seen);
		return (1);
	}
	printf("pingpong ok\n");
	return (0);
}
