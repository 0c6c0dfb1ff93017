/*
 * Message ping-pong between two virtual cpus: the server thread runs on
 * cpu 1 and blocks in lwkt_waitport(); the client on cpu 0 sends numbered
 * messages, 500,000 with lwkt_domsg() and 500,000 with lwkt_sendmsg() +
 * lwkt_waitport() on its own port, then batches of 8 asynchronous
 * messages in flight at once. The server checks every number and answers
 * 3 * n + 1 with error n % 7; the client checks every answer, that each
 * reply is its own message, and that batched replies come back in order.
 * Both threads drop the MP lock first so that the cpus run in parallel.
 *
 * The threads lwkt_create makes hold what a put or a reply from another
 * cpu reads of a port's owner (td_msgport.mp_td, the port's vectors,
 * td_gd) in one cache line, apart from the fields the owner writes as it
 * waits (mp_flags, td_wmesg): checked for both threads.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define ROUNDS		500000
#define BATCH		8
#define BATCHES		2000
#define CMD_WORK	1
#define CMD_QUIT	2

static thread_t server_td;
static int server_bad, client_bad, served, server_cpu, client_cpu;

static void
server(void *arg)
{
	lwkt_port_t port = &curthread->td_msgport;
	lwkt_msg_t msg;
	int expect = 0, n;

	(void)arg;
	rel_mplock();
	server_cpu = mycpu->gd_cpuid;
	for (;;) {
		msg = lwkt_waitport(port, NULL);
		if (msg->ms_cmd == CMD_QUIT) {
			lwkt_replymsg(msg, 0);
			break;
		}
		n = msg->u.ms_result;
		if (msg->ms_cmd != CMD_WORK || n != expect)
			++server_bad;
		expect = n + 1;
		msg->u.ms_result = 3 * n + 1;
		++served;
		lwkt_replymsg(msg, n % 7);
	}
}

/* 1 when the fields of td that another cpu reads share one cache line. */
static int
one_line(thread_t td)
{
	uintptr_t first = (uintptr_t)&td->td_msgport.mp_td;
	uintptr_t last = (uintptr_t)&td->td_gd + sizeof(td->td_gd) - 1;
	uintptr_t flags = (uintptr_t)&td->td_msgport.mp_flags;
	uintptr_t wmesg = (uintptr_t)&td->td_wmesg;

	return (first / 64 == last / 64 && flags / 64 != first / 64 &&
	    wmesg / 64 != first / 64);
}

static int
check(struct lwkt_msg *m, int n, int error)
{
	return (m->u.ms_result == 3 * n + 1 && error == n % 7 &&
	    (m->ms_flags & MSGF_DONE) != 0);
}

static void
client(void *arg)
{
	lwkt_port_t sport = &server_td->td_msgport;
	lwkt_port_t rport = &curthread->td_msgport;
	struct lwkt_msg msg, batch[BATCH];
	lwkt_msg_t m;
	int i, b, k, n = 0, error;

	(void)arg;
	rel_mplock();
	client_cpu = mycpu->gd_cpuid;
	lwkt_initmsg(&msg, rport, CMD_WORK);
	for (i = 0; i < ROUNDS; ++i, ++n) {
		msg.u.ms_result = n;
		error = lwkt_domsg(sport, &msg);
		if (!check(&msg, n, error))
			++client_bad;
	}
	printf("domsg %d round trips checked\n", ROUNDS);
	for (i = 0; i < ROUNDS; ++i, ++n) {
		msg.u.ms_result = n;
		lwkt_sendmsg(sport, &msg);
		m = lwkt_waitport(rport, NULL);
		if (m != &msg || !check(m, n, m->ms_error))
			++client_bad;
	}
	printf("sendmsg+waitport %d round trips checked\n", ROUNDS);
	for (k = 0; k < BATCH; ++k)
		lwkt_initmsg(&batch[k], rport, CMD_WORK);
	for (b = 0; b < BATCHES; ++b) {
		for (k = 0; k < BATCH; ++k) {
			batch[k].u.ms_result = n + k;
			lwkt_sendmsg(sport, &batch[k]);
		}
		for (k = 0; k < BATCH; ++k) {
			m = lwkt_waitport(rport, NULL);
			if (m != &batch[k] || !check(m, n + k, m->ms_error))
				++client_bad;
		}
		n += BATCH;
	}
	printf("%d batches of %d in flight checked\n", BATCHES, BATCH);
	if (lwkt_getport(rport) != NULL)
		++client_bad;
	msg.ms_cmd = CMD_QUIT;
	lwkt_domsg(sport, &msg);
}

int
main(void)
{
	thread_t client_td;
	int cpu;

	uthread_init();
	cpu = caps_fork_vcpu();
	/* Created stopped so that TDF_VERBOSE can be cleared first. */
	lwkt_create(server, NULL, &server_td, NULL, TDF_STOPREQ, cpu, "server");
	lwkt_create(client, NULL, &client_td, NULL, TDF_STOPREQ, -1, "client");
	server_td->td_flags &= ~TDF_VERBOSE;
	client_td->td_flags &= ~TDF_VERBOSE;
	printf("read by other cpus in one line: server %s client %s\n",
	    one_line(server_td) ? "yes" : "no",
	    one_line(client_td) ? "yes" : "no");
	lwkt_schedule(server_td);
	lwkt_schedule(client_td);
	lwkt_deschedule_self();
	lwkt_switch();
	printf("client cpu %d server cpu %d\n", client_cpu, server_cpu);
	printf("served %d bad %d/%d\n", served, server_bad, client_bad);
	return (server_bad + client_bad != 0);
}
