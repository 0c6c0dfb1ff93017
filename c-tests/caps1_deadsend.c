/*
 * caps1_deadsend -- a request sent on a connection the library already
 * knows is dead comes back as a failure, never as an answer.
 *
 *	caps1_deadsend		(against "test" served by caps1 -s -n1)
 *
 * One round trip, then the service closes. The program waits inside
 * libcaps (lwkt_yield reads the sockets) until the port is shut down
 * (CAPPF_SHUTDOWN) and sends the same message again, as caps1's loop
 * does: lwkt_beginmsg must say EIO and caps_client_waitreply must return
 * NULL, although lwkt_initmsg left the message marked done and it still
 * holds the first reply's error.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <sys/caps.h>

#include <stdio.h>
#include <unistd.h>

static void
arm(lwkt_msg_t msg, lwkt_port_t rport, int i)
{
	lwkt_initmsg(msg, rport, 0);
	msg->u.ms_result = i;
	msg->ms_msgsize = sizeof(*msg);
	msg->ms_maxsize = sizeof(*msg);
}

int
main(void)
{
	struct lwkt_port replyport;
	struct lwkt_msg msg;
	caps_port_t port;
	lwkt_msg_t r;
	int error, waited;

	lwkt_initport(&replyport, curthread);
	port = caps_client("test", (uid_t)-1, 0);
	if (port == NULL) {
		printf("failed to connect\n");
		return (1);
	}
	arm(&msg, &replyport, 7);
	lwkt_beginmsg(&port->lport, &msg);
	r = caps_client_waitreply(port, &msg);
	printf("first: %s error=%d\n", r == &msg ? "replied" : "lost",
	    msg.ms_error);
	for (waited = 0; (port->flags & CAPPF_SHUTDOWN) == 0; ++waited) {
		if (waited == 60000) {
			printf("the port was never shut down\n");
			return (1);
		}
		lwkt_yield();
		usleep(1000);
	}
	printf("shut down\n");
	arm(&msg, &replyport, 8);
	error = lwkt_beginmsg(&port->lport, &msg);
	r = caps_client_waitreply(port, &msg);
	printf("second: beginmsg %d, waitreply %s\n", error,
	    r == NULL ? "NULL" : "returned the message");
	caps_close(port);
	return (0);
}
