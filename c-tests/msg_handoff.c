/*
 * msg_handoff -- lwkt_domsg to a thread waiting on its port on the same
 * cpu, which the library may hand the cpu to directly: the order in which
 * threads run must still be the scheduler's (a runnable thread of higher
 * priority, or one of the same priority already in line, runs before the
 * server), and the message, the ports and the client go through the same
 * states as on the general path (seen from the server while the client
 * waits, and by the client after the reply). A client woken before its
 * reply goes on waiting for it. The same for the way back: a server that
 * replies and waits may give the cpu straight to its client, but only when
 * the scheduler would run the client next.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdio.h>
#include <string.h>

#define CMD_PLAIN	1
#define CMD_KICK	2	/* server wakes the client before replying */
#define CMD_LINE	3	/* server puts a thread in line before replying */
#define CMD_HIGH	4	/* server makes a higher one runnable first */
#define CMD_QUIT	5
#define PRI		12

static char order[256];
static int failures;
static lwkt_port_t srv_port;
static thread_t ctd, std;

#define CHECK(cond) do {						\
	if (!(cond)) {							\
		printf("FAIL line %d: %s\n", __LINE__, #cond);		\
		++failures;						\
	}								\
} while (0)

static void
note(const char *who)
{
	strcat(order, who);
	strcat(order, " ");
}

/* A thread that only says it ran. */
static void
runner(void *arg)
{
	note(arg);
}

static thread_t stopped(const char *, int);

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
		note("S");
		/* The message as the put left it, the client blocked on its
		 * reply port. */
		CHECK(msg->ms_flags == 0);
		CHECK(msg->ms_target_port == srv_port);
		CHECK((srv_port->mp_flags & MSGPORTF_WAITING) == 0);
		CHECK(TAILQ_EMPTY(&srv_port->mp_msgq));
		CHECK((ctd->td_flags & TDF_RUNQ) == 0);
		CHECK(ctd->td_wmesg != NULL && strcmp(ctd->td_wmesg, "waitport") == 0);
		CHECK(ctd->td_wchan == &ctd->td_msgport);
		CHECK(ctd->td_msgport.mp_flags & MSGPORTF_WAITING);
		CHECK(curthread->td_flags & TDF_RUNQ);
		if (cmd == CMD_KICK) {
			/* Woken without its reply, the client must wait on. */
			lwkt_schedule(ctd);
			lwkt_yield();
			note("S2");
			CHECK((ctd->td_flags & TDF_RUNQ) == 0);
			CHECK(ctd->td_msgport.mp_flags & MSGPORTF_WAITING);
		}
		if (cmd == CMD_LINE)
			lwkt_schedule(stopped("Z", PRI));
		if (cmd == CMD_HIGH)
			lwkt_schedule(stopped("W", PRI + 5));
		lwkt_replymsg(msg, cmd + 100);
		if (cmd == CMD_LINE || cmd == CMD_HIGH) {
			/* The client woken, behind what was in line. */
			CHECK(ctd->td_flags & TDF_RUNQ);
			CHECK((ctd->td_msgport.mp_flags & MSGPORTF_WAITING) == 0);
		}
	} while (cmd != CMD_QUIT);
}

/* One domsg; what ran in between is in `order`. */
static void
send(int cmd, const char *what)
{
	struct lwkt_msg msg;
	int error;

	lwkt_initmsg(&msg, &curthread->td_msgport, cmd);
	error = lwkt_domsg(srv_port, &msg);
	note("C");
	CHECK(error == cmd + 100);
	CHECK(msg.ms_flags == (MSGF_DONE | MSGF_REPLY));
	CHECK((curthread->td_msgport.mp_flags & MSGPORTF_WAITING) == 0);
	CHECK(curthread->td_wmesg == NULL && curthread->td_wchan == NULL);
	if (cmd != CMD_QUIT)
		CHECK(srv_port->mp_flags & MSGPORTF_WAITING);
	printf("%s: %s\n", what, order);
	order[0] = '\0';
}

static thread_t
stopped(const char *name, int pri)
{
	thread_t td;

	lwkt_create(runner, (void *)name, &td, NULL, TDF_STOPREQ, -1, name);
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_setpri(td, pri);
	return (td);
}

static void
client(void *arg)
{
	(void)arg;
	send(CMD_PLAIN, "alone");
	/* A thread of higher priority made runnable: it runs first. */
	lwkt_schedule(stopped("H", PRI + 5));
	send(CMD_PLAIN, "higher runnable");
	/* One of the same priority already in line: it runs first. */
	lwkt_schedule(stopped("X", PRI));
	send(CMD_PLAIN, "same in line");
	/* A server of lower priority than a runnable thread: that one
	 * runs before the server. */
	lwkt_setpri(std, PRI - 3);
	lwkt_schedule(stopped("Y", PRI - 1));
	send(CMD_PLAIN, "lower server");
	lwkt_setpri(std, PRI);
	/* A server of higher priority than the client. */
	lwkt_setpri(std, PRI + 2);
	send(CMD_PLAIN, "higher server");
	lwkt_setpri(std, PRI);
	send(CMD_KICK, "woken early");
	/* On the way back: one of the same priority put in line by the
	 * server before its reply runs before the client. */
	send(CMD_LINE, "reply, same in line");
	/* One of higher priority made runnable by the server: it too. */
	send(CMD_HIGH, "reply, higher runnable");
	send(CMD_QUIT, "quit");
}

int
main(void)
{
	uthread_init();
	lwkt_create(server, NULL, &std, NULL, 0, -1, "server");
	lwkt_create(client, NULL, &ctd, NULL, TDF_STOPREQ, -1, "client");
	std->td_flags &= ~TDF_VERBOSE;
	ctd->td_flags &= ~TDF_VERBOSE;
	lwkt_setpri(std, PRI);
	lwkt_setpri(ctd, PRI);
	/* The server first, to wait on its port. */
	lwkt_yield();
	lwkt_schedule(ctd);
	lwkt_deschedule_self();
	lwkt_switch();
	printf("failures %d\n", failures);
	return (failures != 0);
}
