/*
 * Port ping-pong between two threads: the client sends numbered messages
 * to the server's port, first with lwkt_domsg() (synchronous), then with
 * lwkt_sendmsg() + lwkt_waitport() on its own reply port. The server
 * blocks in lwkt_waitport(port, NULL), checks the number, answers with
 * 3 * n + 1 and error n % 7. Every reply is checked.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdio.h>
#include <stdlib.h>

#define ROUNDS	10000
#define CMD_WORK	1
#define CMD_QUIT	2

static lwkt_port_t server_port;
static int served, errors;

static void
server(void *arg)
{
	lwkt_msg_t msg;
	int expect = 0;

	(void)arg;
	server_port = &curthread->td_msgport;
	for (;;) {
		msg = lwkt_waitport(server_port, NULL);
		if (msg->ms_cmd == CMD_QUIT) {
			lwkt_replymsg(msg, 0);
			break;
		}
		if (msg->u.ms_result != expect % ROUNDS)
			++errors;
		++expect;
		++served;
		msg->u.ms_result = 3 * msg->u.ms_result + 1;
		lwkt_replymsg(msg, msg->u.ms_result % 7);
	}
	printf("server: served %d messages\n", served);
}

static void
client(void *arg)
{
	lwkt_port_t rport = &curthread->td_msgport;
	struct lwkt_msg msg;
	int i, error, bad = 0;

	(void)arg;
	for (i = 0; i < ROUNDS; ++i) {
		lwkt_initmsg(&msg, rport, CMD_WORK);
		msg.u.ms_result = i;
		error = lwkt_domsg(server_port, &msg);
		if (error != (3 * i + 1) % 7 || msg.u.ms_result != 3 * i + 1 ||
		    (msg.ms_flags & MSGF_DONE) == 0)
			++bad;
	}
	printf("client: %d domsg round trips, %d bad\n", ROUNDS, bad);
	bad = 0;
	for (i = 0; i < ROUNDS; ++i) {
		lwkt_msg_t back;

		lwkt_initmsg(&msg, rport, CMD_WORK);
		msg.u.ms_result = i;
		lwkt_sendmsg(server_port, &msg);
		back = lwkt_waitport(rport, NULL);
		if (back != &msg || msg.ms_error != (3 * i + 1) % 7 ||
		    msg.u.ms_result != 3 * i + 1 ||
		    (msg.ms_flags & (MSGF_DONE | MSGF_REPLY | MSGF_QUEUED)) !=
		    (MSGF_DONE | MSGF_REPLY))
			++bad;
	}
	printf("client: %d sendmsg/waitport round trips, %d bad\n", ROUNDS, bad);
	lwkt_initmsg(&msg, rport, CMD_QUIT);
	error = lwkt_domsg(server_port, &msg);
	printf("client: quit acknowledged, error %d\n", error);
}

int
main(void)
{
	thread_t std, ctd;

	uthread_init();
	lwkt_create(server, NULL, &std, NULL, 0, -1, "server");
	lwkt_create(client, NULL, &ctd, NULL, 0, -1, "client");
	std->td_flags &= ~TDF_VERBOSE;
	ctd->td_flags &= ~TDF_VERBOSE;
	lwkt_deschedule_self();
	lwkt_switch();
	printf("main: back, server errors %d\n", errors);
	return (0);
}
