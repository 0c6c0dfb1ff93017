/*
 * caps_hostile -- CAPS under fork() and against other users' nodes.
 *
 *   caps_hostile [-u UID -G GID] MODE ARGS...
 *
 * -u/-G drop to that user and group first (setgroups(0), setgid, setuid).
 *
 *   v1fork-client NAME OWNER
 *	Connects to v1 service NAME of OWNER (a caps_echo server), does one
 *	round trip, forks. The child sends on the inherited port (which must
 *	fail at once) and closes it; the parent then does 100 round trips.
 *   v1fork-service NAME
 *	Publishes v1 service NAME, forks; the child closes its copy of the
 *	service port and exits. The parent prints "ready" and serves one
 *	request (caps_echo semantics: payload complemented, error = cmd).
 *   v2svc NAME UID
 *	caps_sys_service(NAME, UID, -1): prints "ok" or the error.
 *   v2serve NAME NOFILE [LIMIT]
 *	With at most NOFILE descriptors, serves v2 service (NAME, own uid,
 *	-1) for every client: prints "serving", then answers each request
 *	with its own bytes, forever; with LIMIT, until it has received
 *	LIMIT requests, then prints "served LIMIT requests, D dispose
 *	notices, O others" (every message caps_sys_wait gave it) and exits.
 *   hold PATH N SECS [full]
 *	Opens up to N connections to the socket at PATH (non-blocking: a
 *	backlog full for 0.1 s ends the attempt), sends half a hello on each
 *	(with "full": a whole v1 client hello, so the service keeps the
 *	connections it admits; its answer is read and ignored), prints
 *	"held K" (connected), after a second "open after 1 s: O" (not
 *	closed by the service), and after SECS seconds "dropped D": how many
 *	the service has closed by then. Then waits to be killed.
 *   flood PATH N SECS
 *	Opens N v1 connections to the socket at PATH and, for SECS seconds,
 *	sends on each as many largest-size "grow" requests (command 2 of
 *	caps_echo: the reply fills the whole buffer) as the socket takes,
 *	never reading a reply. Prints "flooded K" (connections) at the end,
 *	then waits to be killed.
 *   v2flood NAME N SECS
 *	The same against v2 service (NAME, -1, -1): N clients each put as
 *	many 128 KB requests as they may (CAPS_MAXINPROG) and never read a
 *	reply, for SECS seconds. Prints "flooded K", then waits to be killed.
 *   silent PATH
 *	Listens at PATH and never accepts nor answers: prints "listening",
 *	then waits to be killed.
 *   v2ping NAME [N [W]]
 *	caps_sys_client(NAME, -1, -1), N requests (default 1) one after the
 *	other, each reply checked: prints "ok" and how long it took, or the
 *	error; then keeps the connection open and idle for W seconds.
 *   v2quiet NAME N W
 *	caps_sys_client(NAME, -1, -1): N requests of 1000 bytes and one of
 *	131072 (too big for a ring: it and its reply go on the socket behind
 *	a marker), each reply checked against the request (v2serve echoes),
 *	prints "ok"; sleeps W seconds (outside libcaps: the connection is
 *	quiet); then the same again, "ok" again, and sleeps W seconds more.
 *   v2fork-getgen NAME
 *	Publishes v2 service NAME, connects to it, forks; the child calls
 *	caps_sys_getgen on the inherited client port and prints the result.
 */
#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <fcntl.h>
#include <time.h>
#include <sys/wait.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <sys/caps.h>

#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAYLOAD 64

struct req {
	struct lwkt_msg msg;
	unsigned char data[PAYLOAD];
};

static void
fill(struct req *r, struct lwkt_port *rport, int seq)
{
	int i;

	memset(r, 0, sizeof(*r));
	lwkt_initmsg(&r->msg, rport, 1);
	for (i = 0; i < PAYLOAD; ++i)
		r->data[i] = (unsigned char)(seq + i);
	r->msg.ms_msgsize = sizeof(*r);
	r->msg.ms_maxsize = sizeof(*r);
}

static int
ok_reply(struct req *r, int seq)
{
	int i;

	if (r->msg.ms_error != 1)
		return (0);
	for (i = 0; i < PAYLOAD; ++i) {
		if (r->data[i] != (unsigned char)~(seq + i))
			return (0);
	}
	return (1);
}

static int
report_child(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid)
		return (printf("waitpid: %s\n", strerror(errno)), 1);
	if (WIFSIGNALED(status))
		return (printf("child killed by signal %d\n", WTERMSIG(status)), 1);
	return (0);
}

static int
v1fork_client(const char *name, uid_t owner)
{
	struct lwkt_port rport;
	struct req r;
	caps_port_t port;
	pid_t pid;
	int i, error;

	lwkt_initport(&rport, curthread);
	port = caps_client(name, owner, 0);
	if (port == NULL)
		return (printf("caps_client: %s\n", strerror(errno)), 1);
	fill(&r, &rport, 0);
	if ((error = lwkt_domsg(&port->lport, &r.msg)) != 1 || !ok_reply(&r, 0))
		return (printf("first round trip: error %d\n", error), 1);
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return (printf("fork: %s\n", strerror(errno)), 1);
	if (pid == 0) {
		alarm(10);	/* a hang shows as SIGALRM */
		fill(&r, &rport, 1);
		error = lwkt_domsg(&port->lport, &r.msg);
		printf("child: lwkt_domsg: %s\n", strerror(error));
		caps_close(port);
		printf("child: closed\n");
		fflush(stdout);
		_exit(0);
	}
	if (report_child(pid))
		return (1);
	for (i = 2; i < 102; ++i) {
		fill(&r, &rport, i);
		error = lwkt_domsg(&port->lport, &r.msg);
		if (error != 1 || !ok_reply(&r, i))
			return (printf("parent: round trip %d: error %d\n", i, error), 1);
	}
	printf("parent: ok 100\n");
	caps_close(port);
	return (0);
}

static int
v1fork_service(const char *name)
{
	caps_port_t port;
	lwkt_msg_t msg;
	unsigned char *p;
	size_t i, n;
	pid_t pid;

	port = caps_service(name, (gid_t)-1, 0666, 0);
	if (port == NULL)
		return (printf("caps_service: %s\n", strerror(errno)), 1);
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return (printf("fork: %s\n", strerror(errno)), 1);
	if (pid == 0) {
		alarm(10);
		caps_close(port);
		_exit(0);
	}
	if (report_child(pid))
		return (1);
	printf("ready\n");
	fflush(stdout);
	msg = lwkt_waitport(&port->lport, NULL);
	if (msg == NULL)
		return (printf("service closed\n"), 1);
	p = (unsigned char *)(msg + 1);
	n = msg->ms_msgsize - sizeof(*msg);
	for (i = 0; i < n; ++i)
		p[i] = ~p[i];
	msg->u.ms_result = ~msg->u.ms_result;
	lwkt_replymsg(msg, msg->ms_cmd);
	printf("served 1\n");
	caps_close(port);
	return (0);
}

static int
v2svc(const char *name, uid_t uid)
{
	int id = caps_sys_service(name, uid, (gid_t)-1, 0, CAPF_ANYCLIENT);

	if (id < 0)
		return (printf("caps_sys_service: %s\n", strerror(errno)), 1);
	printf("ok\n");
	caps_sys_close(id);
	return (0);
}

static int
v2serve(const char *name, long nofile, long limit)
{
	static char buf[128 * 1024];
	long requests = 0, disposes = 0, others = 0;
	struct rlimit rl;
	int s;

	rl.rlim_cur = rl.rlim_max = (rlim_t)nofile;
	if (nofile > 0 && setrlimit(RLIMIT_NOFILE, &rl) != 0)
		return (printf("setrlimit: %s\n", strerror(errno)), 1);
	s = caps_sys_service(name, getuid(), (gid_t)-1, 0, CAPF_ANYCLIENT);
	if (s < 0)
		return (printf("caps_sys_service: %s\n", strerror(errno)), 1);
	printf("serving\n");
	fflush(stdout);
	while (limit <= 0 || requests < limit) {
		struct caps_msgid mid;
		int n = caps_sys_wait(s, buf, sizeof(buf), &mid, NULL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return (printf("caps_sys_wait: %s\n", strerror(errno)), 1);
		}
		if (mid.c_state != CAPMS_REQUEST) {
			if (mid.c_state == CAPMS_DISPOSE)
				++disposes;
			else
				++others;
			continue;
		}
		++requests;
		if (caps_sys_reply(s, buf, n, mid.c_id) < 0)
			return (printf("caps_sys_reply: %s\n", strerror(errno)), 1);
	}
	printf("served %ld requests, %ld dispose notices, %ld others\n", requests, disposes, others);
	return (0);
}

static int
unix_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return (-1);
	strcpy(sa->sun_path, path);
	return (0);
}

static int
hold(const char *path, int n, int secs, int full)
{
	static const char hello[16] = { 'C', 'A', 'P', 'S', 1, 0, 1, 0,
	    0x00, 0x04, 0x01, 0x00, 0, 0, 0, 0 };
	struct sockaddr_un sa;
	int *fds = calloc(n, sizeof(int));
	int i, k = 0, dropped = 0;

	if (fds == NULL || unix_addr(&sa, path) != 0)
		return (printf("bad path\n"), 1);
	for (i = 0; i < n; ++i) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0), tries = 0, r;

		if (fd < 0)
			break;
		/* a full backlog: give the service a moment to accept */
		while ((r = connect(fd, (struct sockaddr *)&sa, sizeof(sa))) != 0 &&
		    errno == EAGAIN && ++tries < 100)
			usleep(1000);
		if (r != 0) {
			close(fd);
			break;
		}
		if (write(fd, hello, full ? 16 : 8) < 0) {
			close(fd);
			continue;
		}
		fds[k++] = fd;
	}
	printf("held %d\n", k);
	fflush(stdout);
	sleep(1);
	for (i = 0; i < k; ++i) {
		char b[64];
		ssize_t r = recv(fds[i], b, sizeof(b), MSG_DONTWAIT);

		/* open: nothing to read, or the service's hello */
		if (r > 0 || (r < 0 && errno == EAGAIN))
			++dropped;
	}
	printf("open after 1 s: %d\n", dropped);
	fflush(stdout);
	dropped = 0;
	sleep(secs - 1);
	for (i = 0; i < k; ++i) {
		char b[64];
		ssize_t r = recv(fds[i], b, sizeof(b), MSG_DONTWAIT);

		if (r == 0 || (r < 0 && errno != EAGAIN))
			++dropped;
	}
	printf("dropped %d\n", dropped);
	fflush(stdout);
	for (;;)
		pause();
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec + ts.tv_nsec / 1e9);
}

static void
put16(unsigned char *b, unsigned v)
{
	b[0] = v & 0xff;
	b[1] = (v >> 8) & 0xff;
}

static void
put32(unsigned char *b, unsigned long v)
{
	int i;

	for (i = 0; i < 4; ++i)
		b[i] = (v >> (8 * i)) & 0xff;
}

static void
put64(unsigned char *b, unsigned long long v)
{
	int i;

	for (i = 0; i < 8; ++i)
		b[i] = (v >> (8 * i)) & 0xff;
}

static int
flood(const char *path, int n, int secs)
{
	static const unsigned char hello[16] = {
		'C', 'A', 'P', 'S', 1, 0, 1, 0, 0x00, 0x04, 0x01, 0x00, 0, 0, 0, 0
	};
	struct sockaddr_un sa;
	int *fds = calloc(n, sizeof(int));
	unsigned long long *ids = calloc(n, sizeof(*ids));
	double end = now() + secs;
	int i, k = 0;

	if (fds == NULL || ids == NULL || unix_addr(&sa, path) != 0)
		return (printf("bad path\n"), 1);
	for (i = 0; i < n; ++i) {
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);

		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
		    write(fd, hello, sizeof(hello)) != sizeof(hello)) {
			printf("connect: %s\n", strerror(errno));
			return (1);
		}
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		fds[k++] = fd;
	}
	while (now() < end) {
		int sent = 0;

		for (i = 0; i < k; ++i) {
			unsigned char h[48];

			memset(h, 0, sizeof(h));
			put16(h, 1);				/* request */
			put64(h + 8, ++ids[i]);			/* id */
			put32(h + 16, CAPMSG_MAXSIZE - sizeof(struct lwkt_msg));
			put32(h + 20, 2);			/* cmd: grow */
			if (send(fds[i], h, sizeof(h), MSG_NOSIGNAL) == sizeof(h))
				++sent;
			else
				--ids[i];
		}
		if (sent == 0)
			usleep(10000);
	}
	printf("flooded %d\n", k);
	fflush(stdout);
	for (;;)
		pause();
}

static int
v2flood(const char *name, int n, int secs)
{
	static char big[128 * 1024];
	int *ids = calloc(n, sizeof(int));
	double end = now() + secs;
	int i;

	if (ids == NULL)
		return (1);
	for (i = 0; i < n; ++i) {
		ids[i] = caps_sys_client(name, (uid_t)-1, (gid_t)-1, 0, CAPF_ANYCLIENT);
		if (ids[i] < 0)
			return (printf("caps_sys_client: %s\n", strerror(errno)), 1);
	}
	while (now() < end) {
		int sent = 0;

		for (i = 0; i < n; ++i) {
			if (caps_sys_put(ids[i], big, sizeof(big)) >= 0)
				++sent;
		}
		if (sent == 0)
			usleep(10000);
	}
	printf("flooded %d\n", n);
	fflush(stdout);
	for (;;)
		pause();
}

static int
silent(const char *path)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	if (fd < 0 || unix_addr(&sa, path) != 0)
		return (printf("socket\n"), 1);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 16) != 0)
		return (printf("bind: %s\n", strerror(errno)), 1);
	printf("listening\n");
	fflush(stdout);
	for (;;)
		pause();
}

static int
v2ping(const char *name, long count, int idle)
{
	char buf[16], ping[] = "ping";
	struct caps_msgid mid;
	double t0 = now();
	long i;
	int c, n;

	c = caps_sys_client(name, (uid_t)-1, (gid_t)-1, 0, CAPF_ANYCLIENT);
	if (c < 0)
		return (printf("caps_sys_client: %s\n", strerror(errno)), 1);
	for (i = 0; i < count; ++i) {
		if (caps_sys_put(c, ping, 4) < 0)
			return (printf("caps_sys_put: %s\n", strerror(errno)), 1);
		n = caps_sys_wait(c, buf, sizeof(buf), &mid, NULL);
		if (n != 4 || memcmp(buf, "ping", 4) != 0)
			return (printf("caps_sys_wait: %d %s\n", n, strerror(errno)), 1);
	}
	printf("ok\n");
	fflush(stdout);
	fprintf(stderr, "v2ping: %.3f s\n", now() - t0);
	if (idle > 0)
		sleep((unsigned)idle);
	caps_sys_close(c);
	return (0);
}

/* One request of `len` bytes (byte i: i * 13 + seq) and its echo. */
static int
v2echo(int c, char *buf, size_t len, long seq)
{
	struct caps_msgid mid;
	size_t i;
	int n;

	for (i = 0; i < len; ++i)
		buf[i] = (char)(i * 13 + seq);
	if (caps_sys_put(c, buf, (int)len) < 0)
		return (printf("caps_sys_put: %s\n", strerror(errno)), 1);
	memset(buf, 0, len);
	n = caps_sys_wait(c, buf, (int)len, &mid, NULL);
	if (n != (int)len)
		return (printf("caps_sys_wait: %d of %zu: %s\n", n, len, strerror(errno)), 1);
	for (i = 0; i < len; ++i)
		if (buf[i] != (char)(i * 13 + seq))
			return (printf("request %ld: byte %zu\n", seq, i), 1);
	return (0);
}

static int
v2quiet(const char *name, long count, int idle)
{
	static char buf[128 * 1024];
	long i, seq = 0;
	int c, pass;

	c = caps_sys_client(name, (uid_t)-1, (gid_t)-1, 0, CAPF_ANYCLIENT);
	if (c < 0)
		return (printf("caps_sys_client: %s\n", strerror(errno)), 1);
	for (pass = 0; pass < 2; ++pass) {
		for (i = 0; i < count; ++i)
			if (v2echo(c, buf, 1000, seq++) != 0)
				return (1);
		if (v2echo(c, buf, sizeof(buf), seq++) != 0)
			return (1);
		printf("ok\n");
		fflush(stdout);
		sleep((unsigned)idle);
	}
	caps_sys_close(c);
	return (0);
}

static int
v2fork_getgen(const char *name)
{
	int s, c;
	pid_t pid;

	s = caps_sys_service(name, getuid(), (gid_t)-1, 0, CAPF_ANYCLIENT);
	if (s < 0)
		return (printf("caps_sys_service: %s\n", strerror(errno)), 1);
	c = caps_sys_client(name, getuid(), (gid_t)-1, 0, CAPF_ANYCLIENT);
	if (c < 0)
		return (printf("caps_sys_client: %s\n", strerror(errno)), 1);
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return (printf("fork: %s\n", strerror(errno)), 1);
	if (pid == 0) {
		caps_gen_t g;

		alarm(10);
		errno = 0;
		g = caps_sys_getgen(c);
		printf("child: getgen %lld: %s\n", (long long)g, strerror(errno));
		fflush(stdout);
		_exit(0);
	}
	if (report_child(pid))
		return (1);
	caps_sys_close(c);
	caps_sys_close(s);
	return (0);
}

int
main(int ac, char **av)
{
	uid_t newuid = (uid_t)-1;
	gid_t newgid = (gid_t)-1;
	int ch;

	while ((ch = getopt(ac, av, "+u:G:")) != -1) {
		switch (ch) {
		case 'u': newuid = (uid_t)strtol(optarg, NULL, 0); break;
		case 'G': newgid = (gid_t)strtol(optarg, NULL, 0); break;
		default: return (64);
		}
	}
	ac -= optind;
	av += optind;
	signal(SIGPIPE, SIG_IGN);
	if (newgid != (gid_t)-1 && (setgroups(0, NULL) != 0 || setgid(newgid) != 0))
		return (perror("setgid"), 65);
	if (newuid != (uid_t)-1 && setuid(newuid) != 0)
		return (perror("setuid"), 65);
	if (ac == 3 && strcmp(av[0], "v1fork-client") == 0)
		return (v1fork_client(av[1], (uid_t)strtol(av[2], NULL, 0)));
	if (ac == 2 && strcmp(av[0], "v1fork-service") == 0)
		return (v1fork_service(av[1]));
	if (ac == 3 && strcmp(av[0], "v2svc") == 0)
		return (v2svc(av[1], (uid_t)strtol(av[2], NULL, 0)));
	if ((ac == 3 || ac == 4) && strcmp(av[0], "v2serve") == 0)
		return (v2serve(av[1], strtol(av[2], NULL, 0), ac == 4 ? strtol(av[3], NULL, 0) : 0));
	if (ac == 4 && strcmp(av[0], "hold") == 0)
		return (hold(av[1], atoi(av[2]), atoi(av[3]), 0));
	if (ac == 5 && strcmp(av[0], "hold") == 0 && strcmp(av[4], "full") == 0)
		return (hold(av[1], atoi(av[2]), atoi(av[3]), 1));
	if (ac == 4 && strcmp(av[0], "flood") == 0)
		return (flood(av[1], atoi(av[2]), atoi(av[3])));
	if (ac == 4 && strcmp(av[0], "v2flood") == 0)
		return (v2flood(av[1], atoi(av[2]), atoi(av[3])));
	if (ac == 2 && strcmp(av[0], "silent") == 0)
		return (silent(av[1]));
	if (ac >= 2 && ac <= 4 && strcmp(av[0], "v2ping") == 0)
		return (v2ping(av[1], ac >= 3 ? strtol(av[2], NULL, 0) : 1,
		    ac == 4 ? atoi(av[3]) : 0));
	if (ac == 4 && strcmp(av[0], "v2quiet") == 0)
		return (v2quiet(av[1], strtol(av[2], NULL, 0), atoi(av[3])));
	if (ac == 2 && strcmp(av[0], "v2fork-getgen") == 0)
		return (v2fork_getgen(av[1]));
	fprintf(stderr, "usage: caps_hostile [-u UID -G GID] MODE ARGS...\n");
	return (64);
}
