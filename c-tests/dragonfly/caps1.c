/*
 * caps1 -- CAPS (version 1) ping-pong between two processes.
 *
 *	caps1 -s	serve "test" and answer every message
 *	caps1 -c	connect to "test" and send messages forever
 *	-q[N]		less output (-q alone is -q1)
 *
 * Our program, written for libcaps for Linux from the description of
 * DragonFly BSD's test/caps/caps1.c in the libcaps spec (section 8.1);
 * not a copy of DragonFly's file.  It includes the headers the spec
 * lists for the original and, like it, calls exit() and strtol()
 * without <stdlib.h>: the library's headers must make that work.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <sys/caps.h>
#include <stdio.h>
#include <signal.h>

#define SERVICE		"test"
#define REPLY_ERROR	23	/* the server replies with this error */

static int	serve(int quiet);
static int	connect_and_send(int quiet);

int
main(int ac, char **av)
{
	int quiet = 0;
	int which = 0;
	char *opt;
	int i;

	for (i = 1; i < ac; ++i) {
		opt = av[i];
		if (opt[0] != '-')
			continue;
		switch (opt[1]) {
		case 's':
		case 'c':
			which = opt[1];
			break;
		case 'q':
			quiet = opt[2] ? strtol(opt + 2, NULL, 0) : 1;
			break;
		}
	}
	signal(SIGPIPE, SIG_IGN);

	if (which == 's')
		return (serve(quiet));
	if (which == 'c')
		return (connect_and_send(quiet));
	fprintf(stderr, "usage: caps1 -s | -c [-q[level]]\n");
	exit(1);
}

/*
 * Answer each message: complement its result, reply with error 23.
 */
static int
serve(int quiet)
{
	caps_port_t port;
	lwkt_msg_t msg;

	port = caps_service(SERVICE, -1, 0666, 0);
	if (quiet == 0)
		printf("caps_service port %p\n", port);
	if (port == NULL)
		exit(1);

	while ((msg = lwkt_waitport(&port->lport, NULL)) != NULL) {
		if (quiet == 0) {
			printf("received msg %p %08x\n", msg, msg->ms_flags);
			printf("replyport: %p %p\n", msg->ms_reply_port,
			    (void *)msg->ms_reply_port->mp_replyport);
		}
		msg->u.ms_result = ~msg->u.ms_result;
		lwkt_replymsg(msg, REPLY_ERROR);
	}
	printf("exit\n");
	return (0);
}

/*
 * Send message number i with result i, forever, until the connection
 * breaks.
 */
static int
connect_and_send(int quiet)
{
	struct lwkt_port replyport;
	struct lwkt_msg junkmsg;
	caps_port_t port;
	int i;

	lwkt_initport(&replyport, curthread);
	port = caps_client(SERVICE, -1, 0);
	if (quiet == 0)
		printf("caps_client port %p msg %p\n", port, &junkmsg);
	if (port == NULL) {
		printf("failed to connect\n");
		exit(1);
	}

	for (i = 0; ; ++i) {
		lwkt_initmsg(&junkmsg, &replyport, 0);
		junkmsg.u.ms_result = i;
		junkmsg.ms_msgsize = sizeof(junkmsg);
		junkmsg.ms_maxsize = sizeof(junkmsg);
		lwkt_beginmsg(&port->lport, &junkmsg);
		if (caps_client_waitreply(port, &junkmsg) == NULL) {
			printf("client failed\n");
			break;
		}
		if (quiet == 0 || (quiet == 1 && (i & 65535) == 0)) {
			printf("reply: error=%d/%d res=%d/%d\n",
			    junkmsg.ms_error, REPLY_ERROR,
			    ~junkmsg.u.ms_result, i);
		}
	}
	printf("exit\n");
	return (0);
}
