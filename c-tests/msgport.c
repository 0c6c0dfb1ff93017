/*
 * msgport -- LWKT message ports on one thread: the default vectors, ports
 * whose vectors are C functions (synchronous completion, EASYNC, forwarding,
 * aborts), the flag protocol, and TAILQ access to a port's queue.
 */
#include <sys/types.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond) do {						\
	if (!(cond)) {							\
		printf("FAIL line %d: %s\n", __LINE__, #cond);		\
		++failures;						\
	}								\
} while (0)

struct mymsg {
	struct lwkt_msg	msg;
	int		payload;
};

/* A port that runs every message at once: synchronous completion. */
static int
sync_putport(lwkt_port_t port, lwkt_msg_t msg)
{
	struct mymsg *m = (struct mymsg *)msg;

	m->payload *= 2;
	return (m->payload == 0 ? 0 : 5);
}

/* A port that queues the message, then completes it before returning. */
static int
async_done_putport(lwkt_port_t port, lwkt_msg_t msg)
{
	int error = lwkt_default_putport(port, msg);

	CHECK(error == EASYNC);
	msg = lwkt_getport(port);
	((struct mymsg *)msg)->payload += 100;
	lwkt_replymsg(msg, 17);
	return (EASYNC);
}

/* A port that forwards everything to another port. */
static lwkt_port_t forward_to;

static int
forward_putport(lwkt_port_t port, lwkt_msg_t msg)
{
	return (lwkt_forwardmsg(forward_to, msg));
}

static int aborts_seen;

static void
counting_abortport(lwkt_port_t port, lwkt_msg_t msg)
{
	++aborts_seen;
	msg->ms_flags |= MSGF_ABORTED;
}

static void
test_constants(void)
{
	printf("MSGF_DONE=%#x MSGF_REPLY=%#x MSGF_QUEUED=%#x MSGF_ASYNC=%#x MSGF_ABORTED=%#x\n",
	    MSGF_DONE, MSGF_REPLY, MSGF_QUEUED, MSGF_ASYNC, MSGF_ABORTED);
	printf("MSGPORTF_WAITING=%#x\n", MSGPORTF_WAITING);
	printf("MSG_CMD_CDEV=%#x MSG_CMD_VFS=%#x MSG_CMD_SYSCALL=%#x MSG_CMD_NETMSG=%#x MSG_SUBCMD_MASK=%#x\n",
	    MSG_CMD_CDEV, MSG_CMD_VFS, MSG_CMD_SYSCALL, MSG_CMD_NETMSG, MSG_SUBCMD_MASK);
	printf("EASYNC=%d (%s)\n", EASYNC, EASYNC > 133 ? "outside Linux errnos" : "COLLIDES");
	printf("sizeof lwkt_msg=%zu lwkt_port=%zu\n", sizeof(struct lwkt_msg), sizeof(struct lwkt_port));
}

static void
test_initport(void)
{
	struct lwkt_port port;

	memset(&port, 0xa5, sizeof(port));
	lwkt_initport(&port, NULL);
	CHECK(TAILQ_EMPTY(&port.mp_msgq));
	CHECK(port.mp_flags == 0 && port.mp_refs == 0 && port.mp_td == NULL);
	CHECK(port.mp_putport && port.mp_waitport && port.mp_replyport && port.mp_abortport);
	CHECK(lwkt_getport(&port) == NULL);
	printf("initport: empty queue, four vectors\n");
}

static void
test_initmsg(void)
{
	struct lwkt_port rport;
	struct mymsg m;

	lwkt_initport(&rport, NULL);
	memset(&m, 0x5a, sizeof(m));
	lwkt_initmsg(&m.msg, &rport, MSG_CMD_VFS | 3);
	CHECK(m.msg.ms_flags == MSGF_DONE);
	CHECK(m.msg.ms_reply_port == &rport);
	CHECK(m.msg.ms_cmd == (MSG_CMD_VFS | 3));
	CHECK(m.msg.ms_msgsize == 0 && m.msg.ms_maxsize == 0);
	m.msg.ms_flags |= MSGF_ASYNC | MSGF_QUEUED;
	lwkt_reinitmsg(&m.msg, NULL);
	CHECK(m.msg.ms_flags == (MSGF_ASYNC | MSGF_DONE));
	CHECK(m.msg.ms_reply_port == NULL);
	printf("initmsg: flags %#x after reinit (async kept)\n", m.msg.ms_flags);
}

/* sendmsg to a default port: queued at the target; the reply is queued
 * on the reply port. */
static void
test_async_roundtrip(void)
{
	struct lwkt_port target, rport;
	struct mymsg m;
	lwkt_msg_t got;

	lwkt_initport(&target, NULL);
	lwkt_initport(&rport, NULL);
	lwkt_initmsg(&m.msg, &rport, 1);
	m.payload = 41;
	lwkt_sendmsg(&target, &m.msg);
	CHECK(m.msg.ms_flags == (MSGF_ASYNC | MSGF_QUEUED));
	CHECK(m.msg.ms_target_port == &target);
	CHECK(TAILQ_FIRST(&target.mp_msgq) == &m.msg);

	got = lwkt_waitport(&target, NULL);	/* a message is there: no wait */
	CHECK(got == &m.msg);
	CHECK(!(got->ms_flags & MSGF_QUEUED));
	((struct mymsg *)got)->payload++;
	lwkt_replymsg(got, 0);
	CHECK(m.msg.ms_flags == (MSGF_ASYNC | MSGF_DONE | MSGF_REPLY | MSGF_QUEUED));
	CHECK(TAILQ_FIRST(&rport.mp_msgq) == &m.msg);

	CHECK(lwkt_waitmsg(&m.msg) == 0);	/* done: returns at once, dequeues */
	CHECK(TAILQ_EMPTY(&rport.mp_msgq));
	CHECK(!(m.msg.ms_flags & MSGF_QUEUED));
	printf("async round trip: payload %d flags %#x\n", m.payload, m.msg.ms_flags);
}

/* A C port that completes synchronously: domsg returns its error without
 * waiting; sendmsg replies it to the reply port so the sender finds it. */
static void
test_sync_port(void)
{
	struct lwkt_port port, rport;
	struct mymsg m;
	int error;

	lwkt_initport(&port, NULL);
	port.mp_putport = sync_putport;
	lwkt_initport(&rport, NULL);

	lwkt_initmsg(&m.msg, &rport, 0);
	m.payload = 4;
	error = lwkt_domsg(&port, &m.msg);
	CHECK(error == 5 && m.payload == 8);
	CHECK(m.msg.ms_flags == MSGF_DONE);
	CHECK(TAILQ_EMPTY(&rport.mp_msgq));
	printf("sync port domsg: error %d payload %d\n", error, m.payload);

	lwkt_initmsg(&m.msg, &rport, 0);
	m.payload = 0;
	lwkt_sendmsg(&port, &m.msg);
	CHECK(m.msg.ms_error == 0);
	CHECK(m.msg.ms_flags == (MSGF_ASYNC | MSGF_DONE | MSGF_REPLY | MSGF_QUEUED));
	CHECK(lwkt_getport(&rport) == &m.msg);
	printf("sync port sendmsg: replied to reply port, error %d\n", m.msg.ms_error);

	lwkt_initmsg(&m.msg, &rport, 0);
	m.payload = 3;
	lwkt_sendmsg(&port, &m.msg);
	CHECK(lwkt_waitmsg(&m.msg) == 5);
	printf("sync port sendmsg+waitmsg: error %d payload %d\n", m.msg.ms_error, m.payload);
}

/* A C port that returns EASYNC after completing the message: domsg waits
 * (the message is already done) and returns the reply's error. */
static void
test_easync_port(void)
{
	struct lwkt_port port, rport;
	struct mymsg m;
	int error;

	lwkt_initport(&port, NULL);
	port.mp_putport = async_done_putport;
	lwkt_initport(&rport, NULL);
	lwkt_initmsg(&m.msg, &rport, 0);
	m.payload = 1;
	error = lwkt_domsg(&port, &m.msg);
	CHECK(error == 17 && m.payload == 101);
	CHECK(m.msg.ms_flags == (MSGF_DONE | MSGF_REPLY));
	CHECK(TAILQ_EMPTY(&rport.mp_msgq));
	printf("EASYNC port domsg: error %d payload %d\n", error, m.payload);

	lwkt_initmsg(&m.msg, &rport, 0);
	lwkt_sendmsg(&port, &m.msg);
	CHECK(lwkt_getport(&rport) == &m.msg);
	CHECK(m.msg.ms_error == 17);
	printf("EASYNC port sendmsg: reply queued, error %d\n", m.msg.ms_error);
}

static void
test_forward_and_abort(void)
{
	struct lwkt_port front, back, rport;
	struct mymsg m;

	lwkt_initport(&front, NULL);
	front.mp_putport = forward_putport;
	lwkt_initport(&back, NULL);
	back.mp_abortport = counting_abortport;
	lwkt_initport(&rport, NULL);
	forward_to = &back;

	lwkt_initmsg(&m.msg, &rport, 0);
	CHECK(lwkt_beginmsg(&front, &m.msg) == EASYNC);
	CHECK(m.msg.ms_target_port == &back);
	CHECK(TAILQ_FIRST(&back.mp_msgq) == &m.msg);
	lwkt_abortmsg(&m.msg);
	CHECK(aborts_seen == 1 && (m.msg.ms_flags & MSGF_ABORTED));
	CHECK(lwkt_getport(&back) == &m.msg);
	lwkt_replymsg(&m.msg, 9);
	CHECK(m.msg.ms_flags & MSGF_DONE);
	CHECK(lwkt_waitmsg(&m.msg) == 9);
	printf("forwarded to back port, aborted %d, error %d\n", aborts_seen, m.msg.ms_error);

	/* the default abort vector does nothing */
	lwkt_initmsg(&m.msg, &rport, 0);
	lwkt_sendmsg(&front, &m.msg);
	m.msg.ms_target_port = &rport;
	lwkt_abortmsg(&m.msg);
	CHECK(lwkt_getport(&back) == &m.msg);
	CHECK(!(m.msg.ms_flags & MSGF_DONE));
	lwkt_default_replyport(&rport, &m.msg);
	CHECK(lwkt_getport(&rport) == &m.msg);
	printf("default abort is a no-op\n");
}

/* Queue order through the TAILQ macros, and waitport(NULL) FIFO order. */
static void
test_queue_order(void)
{
	struct lwkt_port port, rport;
	struct mymsg m[4];
	lwkt_msg_t msg;
	int i, n;

	lwkt_initport(&port, NULL);
	lwkt_initport(&rport, NULL);
	for (i = 0; i < 4; ++i) {
		lwkt_initmsg(&m[i].msg, &rport, i);
		m[i].payload = 10 * i;
		CHECK(lwkt_beginmsg(&port, &m[i].msg) == EASYNC);
	}
	n = 0;
	TAILQ_FOREACH(msg, &port.mp_msgq, ms_node) {
		CHECK(msg->ms_cmd == n);
		++n;
	}
	CHECK(n == 4);
	TAILQ_REMOVE(&port.mp_msgq, &m[1].msg, ms_node);	/* C code may edit the queue */
	m[1].msg.ms_flags &= ~MSGF_QUEUED;
	printf("queue:");
	while ((msg = lwkt_getport(&port)) != NULL)
		printf(" %d", ((struct mymsg *)msg)->payload);
	printf("\n");
	CHECK(TAILQ_EMPTY(&port.mp_msgq));
	CHECK(port.mp_msgq.tqh_last == &port.mp_msgq.tqh_first);
}

/* The default vectors called directly, as a C port might delegate. */
static void
test_default_vectors(void)
{
	struct lwkt_port port;
	struct mymsg m;

	lwkt_initport(&port, NULL);
	lwkt_initmsg(&m.msg, &port, 0);
	m.msg.ms_flags &= ~MSGF_DONE;
	CHECK(lwkt_default_putport(&port, &m.msg) == EASYNC);
	CHECK(m.msg.ms_flags == MSGF_QUEUED);
	CHECK(lwkt_default_waitport(&port, NULL) == &m.msg);
	lwkt_default_replyport(&port, &m.msg);	/* synchronous: only done */
	CHECK(m.msg.ms_flags == (MSGF_DONE | MSGF_REPLY));
	CHECK(lwkt_default_waitport(&port, &m.msg) == &m.msg);
	lwkt_default_abortport(&port, &m.msg);
	printf("default vectors callable directly\n");
}

int
main(void)
{
	test_constants();
	test_initport();
	test_initmsg();
	test_async_roundtrip();
	test_sync_port();
	test_easync_port();
	test_forward_and_abort();
	test_queue_order();
	test_default_vectors();
	printf("%s (%d failures)\n", failures ? "FAILED" : "ok", failures);
	return (failures != 0);
}
