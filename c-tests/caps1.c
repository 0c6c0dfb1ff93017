/*
 * caps1 -- CAPS v1 ping-pong, after DragonFly's test/caps/caps1.c.
 *
 *	caps1 -s [-qN] [-nN]	serve "test": reply to each request with
 *				error 23 and the complemented result
 *	caps1 -c [-qN] [-nN]	connect to "test" and send 0, 1, 2, ...
 *
 * -q (quiet 1) prints every 65536th reply (the first one too), each
 * flushed at once so a watcher sees the stream has started; -q2 none. -nN stops after N
 * requests (client) or N requests served (server); without it both run
 * until the peer goes away. The client ends with the round-trip rate.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <sys/caps.h>
#include <sys/time.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static int quiet;
static long limit = -1;

static int
server(void)
{
	caps_port_t port;
	lwkt_msg_t msg;
	long served = 0;

	port = caps_service("test", (gid_t)-1, 0666, 0);
	if (quiet == 0)
		printf("caps_service port %p\n", (void *)port);
	if (port == NULL) {
		perror("caps_service");
		return (1);
	}
	fflush(stdout);
	while (limit < 0 || served < limit) {
		msg = lwkt_waitport(&port->lport, NULL);
		if (msg == NULL)
			break;
		if (quiet == 0) {
			printf("received msg %p %08x\n", (void *)msg, msg->ms_flags);
			printf("replyport: %p %p\n", (void *)msg->ms_reply_port,
			    (void *)msg->ms_reply_port->mp_replyport);
		}
		msg->u.ms_result = ~msg->u.ms_result;
		lwkt_replymsg(msg, 23);
		++served;
	}
	printf("exit\n");
	caps_close(port);
	return (0);
}

static int
client(void)
{
	struct lwkt_port replyport;
	struct lwkt_msg junkmsg;
	struct timeval t0, t1;
	caps_port_t port;
	long i;
	double secs;

	lwkt_initport(&replyport, curthread);
	port = caps_client("test", (uid_t)-1, 0);
	if (quiet == 0)
		printf("caps_client port %p msg %p\n", (void *)port, (void *)&junkmsg);
	if (port == NULL) {
		printf("failed to connect\n");
		exit(1);
	}
	gettimeofday(&t0, NULL);
	for (i = 0; limit < 0 || i < limit; ++i) {
		lwkt_initmsg(&junkmsg, &replyport, 0);
		junkmsg.u.ms_result = (int)i;
		junkmsg.ms_msgsize = sizeof(junkmsg);
		junkmsg.ms_maxsize = sizeof(junkmsg);
		lwkt_beginmsg(&port->lport, &junkmsg);
		if (caps_client_waitreply(port, &junkmsg) == NULL) {
			printf("client failed\n");
			break;
		}
		if (quiet == 0 || (quiet == 1 && (i & 65535) == 0)) {
			printf("reply: error=%d/23 res=%d/%ld\n",
			    junkmsg.ms_error, ~junkmsg.u.ms_result, i);
			/* -q1's rare progress lines go out at once, pipe or not. */
			if (quiet == 1)
				fflush(stdout);
		}
		if (junkmsg.ms_error != 23 || ~junkmsg.u.ms_result != (int)i) {
			printf("bad reply to %ld\n", i);
			exit(2);
		}
	}
	gettimeofday(&t1, NULL);
	secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_usec - t0.tv_usec) / 1e6;
	if (i > 0 && secs > 0)
		printf("rate: %ld round trips in %.3f s: %.0f/s, %.2f us each\n",
		    i, secs, i / secs, secs * 1e6 / i);
	printf("exit\n");
	caps_close(port);
	return (0);
}

int
main(int ac, char **av)
{
	int mode = 0;
	int i;

	signal(SIGPIPE, SIG_IGN);
	for (i = 1; i < ac; ++i) {
		char *ptr = av[i];

		if (*ptr != '-')
			continue;
		ptr += 2;
		switch (ptr[-1]) {
		case 's':
			mode = 's';
			break;
		case 'c':
			mode = 'c';
			break;
		case 'q':
			quiet = (*ptr != 0) ? (int)strtol(ptr, NULL, 0) : 1;
			break;
		case 'n':
			limit = strtol(ptr, NULL, 0);
			break;
		}
	}
	if (mode == 's')
		return (server());
	if (mode == 'c')
		return (client());
	fprintf(stderr, "usage: caps1 -s|-c [-q[N]] [-nN]\n");
	return (1);
}
