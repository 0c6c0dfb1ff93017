/*
 * caps_close_in_reply -- a v1 client closes its CAPS port from inside
 * the reply vector of its own reply port, which the library calls when
 * the reply arrives (or, with "dead", when the service goes away and the
 * request completes with EIO). The library must not touch the port
 * after the vector returns; tests/valgrind.sh runs this under memcheck,
 * which reports any such access.
 *
 *	caps_close_in_reply reply|dead|wait|waitany|service
 *
 * The service is a child process: it replies to the request ("reply"),
 * or the client kills it once it took the request ("dead"). Prints "closed N" (N: the message's
 * ms_error) and exits 0 once the vector ran.
 *
 * With "wait" ("waitany"), another LWKT thread of the cpu closes the
 * port while its owner waits in caps_client_waitreply for the request
 * (for any reply), which the service took and never answers: the wait
 * must end with NULL and errno ENOTCONN, the request with EIO, and the
 * library must not touch the freed port. Prints "closer: closed", then
 * "waitreply NULL errno ENOTCONN ms_error 5".
 *
 * With "service", the same for a service port of this process: another
 * thread closes it while its owner waits in lwkt_waitport. Prints
 * "closer: closed", then "waitport NULL errno ENOTCONN".
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <sys/caps.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quiet.h"

#define NAME	"closeinreply"

static caps_port_t port;
static volatile int done;

static void
fail(const char *what)
{
	fprintf(stderr, "caps_close_in_reply: %s\n", what);
	exit(1);
}

/* The reply vector: mark the message done, then close the client. */
static void
close_in_reply(lwkt_port_t rport, lwkt_msg_t msg)
{
	(void)rport;
	msg->ms_flags |= MSGF_DONE | MSGF_REPLY;
	caps_close(port);
	done = 1;
}

/*
 * The closer ("wait"): runs once main blocks (main never yields before
 * its wait), and still checks that main is waiting on the port before it
 * closes it.
 */
static void
closer(void *arg)
{
	(void)arg;
	while ((port->lport.mp_flags & MSGPORTF_WAITING) == 0)
		lwkt_yield();
	caps_close(port);
	printf("closer: closed\n");
}

/* "service": another thread closes a service port main waits on. */
static int
close_service_while_waiting(void)
{
	void *r;
	int err;

	if ((port = caps_service(NAME, (gid_t)-1, 0600, 0)) == NULL)
		fail("caps_service failed");
	start_quiet(closer, NULL, -1, "closer");
	errno = 0;
	r = lwkt_waitport(&port->lport, NULL);
	err = errno;
	printf("waitport %s errno %s\n", r == NULL ? "NULL" : "message",
	    err == ENOTCONN ? "ENOTCONN" : strerror(err));
	return (0);
}

/* "wait": another thread closes the port while main waits on it. */
static void
close_while_waiting(lwkt_msg_t m, int any)
{
	void *r;
	int err;

	start_quiet(closer, NULL, -1, "closer");
	errno = 0;
	r = caps_client_waitreply(port, any ? NULL : m);
	err = errno;
	printf("waitreply %s errno %s ms_error %d\n", r == NULL ? "NULL" : "message",
	    err == ENOTCONN ? "ENOTCONN" : strerror(err), m->ms_error);
}

static void
server(int up, int reply)
{
	caps_port_t s;
	lwkt_msg_t msg;
	char c = 1;

	if ((s = caps_service(NAME, (gid_t)-1, 0600, 0)) == NULL)
		_exit(2);
	if (write(up, &c, 1) != 1)
		_exit(2);
	if ((msg = lwkt_waitport(&s->lport, NULL)) == NULL)
		_exit(2);
	if (!reply) {
		/* The client kills us, the request unanswered. */
		if (write(up, &c, 1) != 1)
			_exit(2);
		for (;;)
			pause();
	}
	lwkt_replymsg(msg, 0);
	/* Until the client is gone (its close ends the connection). */
	while ((msg = lwkt_waitport(&s->lport, NULL)) != NULL)
		lwkt_replymsg(msg, 0);
	_exit(0);
}

int
main(int ac, char **av)
{
	struct lwkt_port rport;
	struct lwkt_msg m;
	int up[2], status, reply, waiter;
	pid_t pid;
	char c;

	if (ac == 2 && strcmp(av[1], "service") == 0)
		return (close_service_while_waiting());
	if (ac != 2 || (strcmp(av[1], "reply") != 0 && strcmp(av[1], "dead") != 0 &&
	    strcmp(av[1], "wait") != 0 && strcmp(av[1], "waitany") != 0))
		fail("usage: caps_close_in_reply reply|dead|wait|waitany|service");
	reply = strcmp(av[1], "reply") == 0;
	waiter = strncmp(av[1], "wait", 4) == 0;
	if (pipe(up) != 0)
		fail("pipe");
	fflush(stdout);
	if ((pid = fork()) < 0)
		fail("fork");
	if (pid == 0)
		server(up[1], reply);
	if (read(up[0], &c, 1) != 1)
		fail("the service did not start");
	lwkt_initport(&rport, curthread);
	if (!waiter)
		rport.mp_replyport = close_in_reply;
	if ((port = caps_client(NAME, (uid_t)-1, 0)) == NULL)
		fail("caps_client failed");
	lwkt_initmsg(&m, &rport, 0);
	m.ms_msgsize = m.ms_maxsize = sizeof(m);
	lwkt_beginmsg(&port->lport, &m);
	if (!reply) {
		if (read(up[0], &c, 1) != 1)
			fail("the service did not take the request");
		if (waiter)
			close_while_waiting(&m, strcmp(av[1], "waitany") == 0);
		kill(pid, SIGKILL);
	}
	while (!waiter && !done)
		lwkt_yield();
	if (!waiter)
		printf("closed %d\n", m.ms_error);
	if (reply)
		kill(pid, SIGKILL);
	if (waitpid(pid, &status, 0) != pid)
		fail("waitpid");
	return (0);
}
