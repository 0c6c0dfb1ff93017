/*
 * caps_fair -- a v1 service takes its connections' requests in turns: a
 * client that sends a burst of requests at once does not make another
 * client's request wait behind the whole burst (issue 17).
 *
 *	caps_fair [a|b] [v2]
 *
 * A service and two clients, A and B, each a process. Both join (one
 * round trip each; A first, or B with argument b); then the service stops
 * taking requests until A has sent BURST requests at once and B one after
 * them. Which connection the service looks at first when it goes on
 * depends on the join order and the transport (over shared memory the
 * first attached ring is looked at first; over the socket, the last one
 * epoll reported stays first in its ready list), so the test runs both
 * orders. The service then takes all BURST + 1 and notes
 * where B's came. A connection is read at most TURN requests at a time,
 * so B's must come within the first TURN + 1: prints "fair: yes" if it
 * did, else "fair: no" (its position on stderr). Counts, not clocks: the
 * verdict does not depend on timing.
 *
 * With v2, the same over the kernel-style calls (caps_sys_*): A's burst
 * is BURST2 puts (a v2 client may have CAPS_MAXINPROG outstanding), the
 * position counts requests only (the service also sees the joins'
 * dispose notices).
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

#define NAME	"fair"
#define BURST	200	/* under the 256 requests a connection may hold */
#define BURST2	120	/* v2: under the 128 a client may have outstanding */
#define TURN	32	/* what the service reads from one connection at a time */

struct tmsg {
	struct lwkt_msg	msg;
	char		tag;	/* 'J' join, 'A' or 'B' */
};

static void
fail(const char *who, const char *what)
{
	fprintf(stderr, "caps_fair: %s: %s\n", who, what);
	_exit(1);
}

/* Wait for one byte on fd (the other side's go-ahead). */
static void
await(int fd, const char *who)
{
	char c;

	while (read(fd, &c, 1) != 1)
		if (errno != EINTR)
			fail(who, "lost its peer");
}

static void
signal_fd(int fd)
{
	char c = 1;

	if (write(fd, &c, 1) != 1)
		_exit(1);
}

/* B's request came `pos_b`-th of `total`: within the first TURN + 1? */
static void
verdict(int pos_b, int total)
{
	if (pos_b == 0)
		fail("service", "B's request never came");
	printf("fair: %s\n", pos_b <= TURN + 1 ? "yes" : "no");
	if (pos_b > TURN + 1)
		fprintf(stderr, "caps_fair: B's request came %d of %d\n", pos_b, total);
	fflush(stdout);
}

static void
send_tag(caps_port_t port, struct lwkt_port *rport, struct tmsg *m, char tag)
{
	lwkt_initmsg(&m->msg, rport, 0);
	m->msg.ms_msgsize = m->msg.ms_maxsize = sizeof(*m);
	m->tag = tag;
	lwkt_beginmsg(&port->lport, &m->msg);
}

static caps_port_t
join(const char *who, struct lwkt_port *rport)
{
	struct tmsg m;
	caps_port_t port;

	lwkt_initport(rport, curthread);
	port = caps_client(NAME, (uid_t)-1, 0);
	if (port == NULL)
		fail(who, "caps_client failed");
	send_tag(port, rport, &m, 'J');
	if (caps_client_waitreply(port, &m.msg) == NULL)
		fail(who, "no reply to its join");
	return (port);
}

static void
server(int up, int go)
{
	caps_port_t port;
	lwkt_msg_t msg;
	int i, pos_b = 0;

	port = caps_service(NAME, (gid_t)-1, 0600, 0);
	if (port == NULL)
		fail("service", "caps_service failed");
	signal_fd(up);
	for (i = 0; i < 2; ++i) {
		if ((msg = lwkt_waitport(&port->lport, NULL)) == NULL)
			fail("service", "closed");
		lwkt_replymsg(msg, 0);
	}
	/* Take nothing until both clients sent. */
	await(go, "service");
	for (i = 1; i <= BURST + 1; ++i) {
		if ((msg = lwkt_waitport(&port->lport, NULL)) == NULL)
			fail("service", "closed");
		if (((struct tmsg *)msg)->tag == 'B')
			pos_b = i;
		lwkt_replymsg(msg, 0);
	}
	verdict(pos_b, BURST + 1);
	caps_close(port);
	_exit(0);
}

/*
 * The two clients join in order (`first` joins, then the other); then A
 * sends its burst, then B its request, then B tells the service to go.
 */
static int first_joined[2], both_joined[2], a_sent[2], go[2];

static void
client_a(int first)
{
	static struct tmsg m[BURST];
	struct lwkt_port rport;
	caps_port_t port;
	int i;

	if (first == 'a') {
		port = join("A", &rport);
		signal_fd(first_joined[1]);
		await(both_joined[0], "A");
	} else {
		await(first_joined[0], "A");
		port = join("A", &rport);
	}
	for (i = 0; i < BURST; ++i)
		send_tag(port, &rport, &m[i], 'A');
	signal_fd(a_sent[1]);
	for (i = 0; i < BURST; ++i)
		if (caps_client_waitreply(port, NULL) == NULL)
			fail("A", "a reply was lost");
	caps_close(port);
	_exit(0);
}

static void
client_b(int first)
{
	struct lwkt_port rport;
	struct tmsg m;
	caps_port_t port;

	if (first == 'b') {
		port = join("B", &rport);
		signal_fd(first_joined[1]);
	} else {
		await(first_joined[0], "B");
		port = join("B", &rport);
		signal_fd(both_joined[1]);
	}
	await(a_sent[0], "B");
	send_tag(port, &rport, &m, 'B');
	signal_fd(go[1]);
	if (caps_client_waitreply(port, &m.msg) == NULL)
		fail("B", "its reply was lost");
	caps_close(port);
	_exit(0);
}

/* ---- v2: the same with caps_sys_* ---- */

static int
join2(const char *who)
{
	struct caps_msgid mid;
	char buf[16];
	int cid;

	cid = caps_sys_client(NAME, getuid(), getgid(), 0, CAPF_ANYCLIENT);
	if (cid < 0)
		fail(who, "caps_sys_client failed");
	if (caps_sys_put(cid, "J", 1) < 0)
		fail(who, "caps_sys_put failed");
	if (caps_sys_wait(cid, buf, sizeof(buf), &mid, NULL) < 0 ||
	    mid.c_state != CAPMS_REPLY)
		fail(who, "no reply to its join");
	return (cid);
}

/* The next request (dispose notices are taken and passed over). */
static char
take2(int cid, off_t *id)
{
	struct caps_msgid mid;
	char buf[16];
	int n;

	for (;;) {
		n = caps_sys_wait(cid, buf, sizeof(buf), &mid, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fail("service", "caps_sys_wait failed");
		}
		if (mid.c_state == CAPMS_REQUEST && n == 1) {
			*id = mid.c_id;
			return (buf[0]);
		}
	}
}

static void
server2(int up, int go)
{
	off_t id;
	int cid, i, pos_b = 0;

	cid = caps_sys_service(NAME, getuid(), getgid(), 0, CAPF_ANYCLIENT);
	if (cid < 0)
		fail("service", "caps_sys_service failed");
	signal_fd(up);
	for (i = 0; i < 2; ++i) {
		take2(cid, &id);
		caps_sys_reply(cid, "", 0, id);
	}
	await(go, "service");
	for (i = 1; i <= BURST2 + 1; ++i) {
		if (take2(cid, &id) == 'B')
			pos_b = i;
		caps_sys_reply(cid, "", 0, id);
	}
	verdict(pos_b, BURST2 + 1);
	caps_sys_close(cid);
	_exit(0);
}

static void
replies2(int cid, int n, const char *who)
{
	struct caps_msgid mid;
	char buf[16];

	while (n > 0) {
		if (caps_sys_wait(cid, buf, sizeof(buf), &mid, NULL) < 0) {
			if (errno == EINTR)
				continue;
			fail(who, "a reply was lost");
		}
		if (mid.c_state == CAPMS_REPLY)
			--n;
	}
}

static void
client_a2(int first)
{
	int cid, i;

	if (first == 'a') {
		cid = join2("A");
		signal_fd(first_joined[1]);
		await(both_joined[0], "A");
	} else {
		await(first_joined[0], "A");
		cid = join2("A");
	}
	for (i = 0; i < BURST2; ++i)
		if (caps_sys_put(cid, "A", 1) < 0)
			fail("A", "caps_sys_put failed");
	signal_fd(a_sent[1]);
	replies2(cid, BURST2, "A");
	caps_sys_close(cid);
	_exit(0);
}

static void
client_b2(int first)
{
	int cid;

	if (first == 'b') {
		cid = join2("B");
		signal_fd(first_joined[1]);
	} else {
		await(first_joined[0], "B");
		cid = join2("B");
		signal_fd(both_joined[1]);
	}
	await(a_sent[0], "B");
	if (caps_sys_put(cid, "B", 1) < 0)
		fail("B", "caps_sys_put failed");
	signal_fd(go[1]);
	replies2(cid, 1, "B");
	caps_sys_close(cid);
	_exit(0);
}

int
main(int ac, char **av)
{
	int up[2], i, status, ok = 1, first = ac > 1 ? av[1][0] : 'a';
	int v2 = ac > 2 && strcmp(av[2], "v2") == 0;
	pid_t pid[3];

	if ((first != 'a' && first != 'b') || (ac > 2 && !v2)) {
		fprintf(stderr, "usage: caps_fair [a|b] [v2]\n");
		return (2);
	}
	signal(SIGPIPE, SIG_IGN);
	if (pipe(up) || pipe(go) || pipe(first_joined) || pipe(both_joined) ||
	    pipe(a_sent)) {
		perror("pipe");
		return (1);
	}
	fflush(stdout);
	if ((pid[0] = fork()) == 0) {
		if (v2)
			server2(up[1], go[0]);
		server(up[1], go[0]);
	}
	await(up[0], "main");	/* the service is published */
	if ((pid[1] = fork()) == 0) {
		if (v2)
			client_a2(first);
		client_a(first);
	}
	if ((pid[2] = fork()) == 0) {
		if (v2)
			client_b2(first);
		client_b(first);
	}
	for (i = 0; i < 3; ++i) {
		if (pid[i] < 0 || waitpid(pid[i], &status, 0) != pid[i] ||
		    !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			ok = 0;
	}
	return (ok ? 0 : 1);
}
