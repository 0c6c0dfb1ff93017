/*
 * caps_sys_bench -- CAPS v2 (the 2004 kernel calls caps_sys_*) request and
 * reply against a plain Unix-socket ping-pong and, pipelined, against CAPS
 * v1, in one run, on one core and on two cores.
 *
 *	caps_sys_bench [ROUNDS [REPS]]
 *
 * Round trip: a client caps_sys_put()s 64 bytes and caps_sys_wait()s for
 * the reply; the server (another process) caps_sys_wait()s, answers each
 * request with caps_sys_reply() and ignores the CAPMS_DISPOSE notices, as
 * caps_s does. Baseline: two processes writing the same 112 bytes (the
 * 64-byte payload behind a 48-byte header, what a CAPS frame carries) back
 * and forth over a Unix stream socket with blocking write/read. p50 and p99
 * from per-round-trip clock readings. Pipelined: 64 requests outstanding,
 * replies per second, beside CAPS v1 doing the same (a caps_client port,
 * 64 lwkt_msgs with 64 bytes of payload each in flight, a caps_service
 * answering with lwkt_replymsg): REPS runs of each (default 3), v1 and v2
 * alternating, medians and the v2/v1 ratio of the medians with the range
 * of the per-run ratios. "One core": both processes pinned to cpu 0.
 *
 * Every reply is checked: the server sends the request's bytes
 * complemented, the client compares all of them (and, for CAPS, the size,
 * the state and the message id), so a broken path fails the run (exit 1)
 * rather than giving a number. Services live in a private rendezvous
 * directory (LIBCAPS_DIR = a mkdtemp directory, removed at the end).
 */
#define _GNU_SOURCE
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <sys/caps.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

#define PAYLOAD		64
#define HDR		48	/* our frame header (docs/wire-protocol.md) */
#define RAWMSG		(HDR + PAYLOAD)
#define PIPE		64	/* requests outstanding (CAPS_MAXINPROG is 128) */
#define MAXREPS		32	/* pipelined runs of v1 and of v2 */

static long rounds = 20000;
static int reps = 3;
static char dir[256];

static void
die(const char *what)
{
	fprintf(stderr, "caps_sys_bench: %s\n", what);
	_exit(2);
}

/* ---- message contents ---- */

/* Is p the reply to the request for seq? */
static int
is_reply(const unsigned char *p, size_t n, uint64_t seq)
{
	unsigned char want[RAWMSG];

	fill(want, n, seq);
	complement(want, n);
	return (memcmp(p, want, n) == 0);
}

/* ---- plumbing ---- */

/*
 * Run fn(arg, out) in a child process (each measurement gets a fresh
 * libcaps and its own pinning); its result comes back through a pipe.
 * Exits the benchmark if the child failed.
 */
static void
in_child(void (*fn)(void *, void *), void *arg, void *out, size_t outsize,
    pid_t server)
{
	int fds[2], ok;
	pid_t pid;

	if (pipe(fds) != 0) {
		perror("pipe");
		exit(1);
	}
	pid = xfork();
	if (pid == 0) {
		/*
		 * Watchdog (SIGALRM terminates): a lost reply, or a service
		 * that never registers, fails the run instead of hanging it.
		 */
		alarm(30 + rounds / 100);
		close(fds[0]);
		fn(arg, out);
		if (writen(fds[1], out, outsize) != 0)
			_exit(1);
		_exit(0);
	}
	close(fds[1]);
	ok = readn(fds[0], out, outsize) == 0;
	close(fds[0]);
	ok &= reap(pid);
	if (server > 0) {
		kill(server, SIGTERM);
		reap(server);
	}
	if (!ok) {
		fprintf(stderr, "caps_sys_bench: a measurement failed\n");
		exit(1);
	}
}

struct place {
	int	scpu, ccpu;
	double	*samples;
	char	name[32];	/* CAPS service name */
};

/* ---- raw socket ping-pong ---- */

static int raw_fd = -1;

static pid_t
raw_server(int cpu)
{
	unsigned char buf[RAWMSG];
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
		perror("socketpair");
		exit(1);
	}
	pid = xfork();
	if (pid == 0) {
		pin(cpu);
		close(sv[0]);
		while (readn(sv[1], buf, sizeof(buf)) == 0) {
			complement(buf, sizeof(buf));
			if (writen(sv[1], buf, sizeof(buf)) != 0)
				break;
		}
		_exit(0);
	}
	close(sv[1]);
	raw_fd = sv[0];
	return (pid);
}

static void
raw_rtt_client(void *arg, void *out)
{
	struct place *p = arg;
	unsigned char buf[RAWMSG];
	long i;

	pin(p->ccpu);
	for (i = -rounds / 10; i < rounds; ++i) {	/* < 0: warm up */
		uint64_t seq = (uint64_t)(i + rounds);
		double t0 = now();

		fill(buf, sizeof(buf), seq);
		if (writen(raw_fd, buf, sizeof(buf)) != 0 ||
		    readn(raw_fd, buf, sizeof(buf)) != 0)
			die("raw: connection lost");
		if (!is_reply(buf, sizeof(buf), seq))
			die("raw: bad reply");
		if (i >= 0)
			p->samples[i] = now() - t0;
	}
	*(struct result *)out = summarize(p->samples, rounds);
}

static struct result
raw_rtt(struct place *p)
{
	pid_t spid = raw_server(p->scpu);
	struct result r;

	in_child(raw_rtt_client, p, &r, sizeof(r), 0);
	close(raw_fd);		/* the server reads EOF and exits */
	reap(spid);
	return (r);
}

static void
raw_pipe_client(void *arg, void *out)
{
	struct place *p = arg;
	unsigned char buf[RAWMSG];
	long sent = 0, got = 0, total = rounds * 5;
	double t0;

	pin(p->ccpu);
	t0 = now();
	for (; sent < PIPE; ++sent) {
		fill(buf, sizeof(buf), sent);
		if (writen(raw_fd, buf, sizeof(buf)) != 0)
			die("raw: connection lost");
	}
	while (got < total) {
		if (readn(raw_fd, buf, sizeof(buf)) != 0)
			die("raw: connection lost");
		if (!is_reply(buf, sizeof(buf), got))	/* in order */
			die("raw: bad reply");
		++got;
		if (sent < total) {
			fill(buf, sizeof(buf), sent++);
			if (writen(raw_fd, buf, sizeof(buf)) != 0)
				die("raw: connection lost");
		}
	}
	*(double *)out = got / (now() - t0);
}

static double
raw_pipelined(struct place *p)
{
	pid_t spid = raw_server(p->scpu);
	double rate;

	in_child(raw_pipe_client, p, &rate, sizeof(rate), 0);
	close(raw_fd);
	reap(spid);
	return (rate);
}

/* ---- CAPS v2 ---- */

/*
 * The service: answer every request with its bytes complemented, skip
 * dispose notices. Runs until killed.
 */
static pid_t
caps_server(struct place *p)
{
	unsigned char buf[PAYLOAD];
	struct caps_msgid msgid;
	pid_t pid;
	int cid, n;

	pid = xfork();
	if (pid != 0)
		return (pid);
	pin(p->scpu);
	cid = caps_sys_service(p->name, getuid(), getgid(), 0, CAPF_ANYCLIENT);
	if (cid < 0) {
		perror("caps_sys_service");
		_exit(1);
	}
	for (;;) {
		n = caps_sys_wait(cid, buf, sizeof(buf), &msgid, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("caps_sys_wait (server)");
			_exit(1);
		}
		if (msgid.c_state == CAPMS_DISPOSE)
			continue;
		if (msgid.c_state != CAPMS_REQUEST || n != PAYLOAD)
			die("server: unexpected message");
		complement(buf, n);
		if (caps_sys_reply(cid, buf, n, msgid.c_id) != 0) {
			perror("caps_sys_reply");
			_exit(1);
		}
	}
}

static int
caps_connect(struct place *p)
{
	int cid;

	pin(p->ccpu);
	/* CAPF_WAITSVC: the service may not have registered yet. */
	cid = caps_sys_client(p->name, getuid(), getgid(), 0,
	    CAPF_ANYCLIENT | CAPF_WAITSVC);
	if (cid < 0) {
		perror("caps_sys_client");
		_exit(1);
	}
	return (cid);
}

/* Wait for one reply; check its state, size and that it answers id. */
static off_t
caps_reply(int cid, unsigned char *buf)
{
	struct caps_msgid msgid;
	int n;

	do
		n = caps_sys_wait(cid, buf, PAYLOAD, &msgid, NULL);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		perror("caps_sys_wait (client)");
		_exit(1);
	}
	if (n != PAYLOAD || msgid.c_state != CAPMS_REPLY)
		die("CAPS: bad reply (size or state)");
	return (msgid.c_id);
}

static void
caps_rtt_client(void *arg, void *out)
{
	struct place *p = arg;
	unsigned char buf[PAYLOAD];
	int cid = caps_connect(p);
	long i;

	for (i = -rounds / 10; i < rounds; ++i) {	/* < 0: warm up */
		uint64_t seq = (uint64_t)(i + rounds);
		double t0 = now();
		off_t id;

		fill(buf, sizeof(buf), seq);
		id = caps_sys_put(cid, buf, sizeof(buf));
		if (id < 0) {
			perror("caps_sys_put");
			_exit(1);
		}
		if (caps_reply(cid, buf) != id || !is_reply(buf, sizeof(buf), seq))
			die("CAPS: bad reply");
		if (i >= 0)
			p->samples[i] = now() - t0;
	}
	*(struct result *)out = summarize(p->samples, rounds);
	caps_sys_close(cid);
}

static struct result
caps_rtt(struct place *p)
{
	pid_t spid = caps_server(p);
	struct result r;

	in_child(caps_rtt_client, p, &r, sizeof(r), spid);
	return (r);
}

/*
 * Pipelined: PIPE requests outstanding; each reply, checked, is followed
 * by a new request. Replies may come in any order: the sequence number of
 * each outstanding id is kept in a slot indexed by the id.
 */
#define SLOTS	256

static void
caps_pipe_client(void *arg, void *out)
{
	static struct { off_t id; uint64_t seq; } slot[SLOTS];
	struct place *p = arg;
	unsigned char buf[PAYLOAD];
	long sent = 0, got = 0, total = rounds * 5;
	int cid = caps_connect(p), i;
	double t0;

	for (i = 0; i < SLOTS; ++i)
		slot[i].id = -1;
	t0 = now();
	while (got < total) {
		while (sent < total && sent - got < PIPE) {
			off_t id;

			fill(buf, sizeof(buf), sent);
			id = caps_sys_put(cid, buf, sizeof(buf));
			if (id < 0) {
				perror("caps_sys_put");
				_exit(1);
			}
			if (slot[id % SLOTS].id != -1)
				die("CAPS: message id reused while outstanding");
			slot[id % SLOTS].id = id;
			slot[id % SLOTS].seq = sent++;
		}
		{
			off_t id = caps_reply(cid, buf);

			if (id < 0 || slot[id % SLOTS].id != id ||
			    !is_reply(buf, sizeof(buf), slot[id % SLOTS].seq))
				die("CAPS: bad reply");
			slot[id % SLOTS].id = -1;
			++got;
		}
	}
	*(double *)out = got / (now() - t0);
	caps_sys_close(cid);
}

/* A pipelined run: the service started by server, client measuring. */
static double
pipelined(pid_t (*server)(struct place *), void (*client)(void *, void *),
    struct place *p)
{
	pid_t spid = server(p);
	double rate;

	in_child(client, p, &rate, sizeof(rate), spid);
	return (rate);
}

/* ---- CAPS v1, pipelined ---- */

struct bmsg {
	struct lwkt_msg	msg;
	unsigned char	data[PAYLOAD];
};

/* The v1 service: complement each request's payload, reply. */
static pid_t
v1_server(struct place *p)
{
	char path[512];
	struct stat st;
	pid_t pid;

	pid = xfork();
	if (pid == 0) {
		caps_port_t port;
		lwkt_msg_t msg;

		pin(p->scpu);
		port = caps_service(p->name, (gid_t)-1, 0600, 0);
		if (port == NULL) {
			perror("caps_service");
			_exit(1);
		}
		while ((msg = lwkt_waitport(&port->lport, NULL)) != NULL) {
			complement((unsigned char *)(msg + 1),
			    msg->ms_msgsize - sizeof(*msg));
			lwkt_replymsg(msg, 0);
		}
		_exit(0);
	}
	/* caps_client has no CAPF_WAITSVC: wait for the node. */
	if (geteuid() == 0)
		snprintf(path, sizeof(path), "%s/root/%s", dir, p->name);
	else
		snprintf(path, sizeof(path), "%s/users/%d/%s", dir,
		    (int)geteuid(), p->name);
	while (stat(path, &st) != 0) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			die("CAPS v1: the service did not start");
		usleep(1000);
	}
	return (pid);
}

/*
 * PIPE messages in flight; each reply, checked, goes out again as the
 * next request (the same work per reply as caps_pipe_client).
 */
static void
v1_pipe_client(void *arg, void *out)
{
	static struct bmsg m[PIPE];
	static uint64_t seq[PIPE];
	struct place *p = arg;
	struct lwkt_port rport;
	caps_port_t port;
	long sent = 0, got = 0, total = rounds * 5;
	double t0;

	pin(p->ccpu);
	lwkt_initport(&rport, curthread);
	port = caps_client(p->name, (uid_t)-1, 0);
	if (port == NULL) {
		perror("caps_client");
		_exit(1);
	}
	t0 = now();
	for (; sent < PIPE; ++sent) {
		seq[sent] = sent;
		fill(m[sent].data, PAYLOAD, sent);
		lwkt_initmsg(&m[sent].msg, &rport, 0);
		m[sent].msg.ms_msgsize = m[sent].msg.ms_maxsize = sizeof(m[sent]);
		lwkt_beginmsg(&port->lport, &m[sent].msg);
	}
	while (got < total) {
		lwkt_msg_t r = caps_client_waitreply(port, NULL);
		struct bmsg *b = (struct bmsg *)r;
		long i = b - m;

		if (r == NULL || i < 0 || i >= PIPE || r->ms_error != 0 ||
		    r->ms_msgsize != sizeof(*b) ||
		    !is_reply(b->data, PAYLOAD, seq[i]))
			die("CAPS v1: bad reply");
		++got;
		if (sent < total) {
			seq[i] = sent;
			fill(b->data, PAYLOAD, sent++);
			lwkt_initmsg(r, &rport, 0);
			r->ms_msgsize = r->ms_maxsize = sizeof(*b);
			lwkt_beginmsg(&port->lport, r);
		}
	}
	*(double *)out = got / (now() - t0);
	caps_close(port);
}

static double
median(double *v, int n)
{
	qsort(v, n, sizeof(double), cmpd);
	return (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
}

/* ---- main ---- */

static pid_t parent;

static void
cleanup(void)
{
	if (getpid() == parent && dir[0] != '\0')
		rm_tree(dir);
}

int
main(int ac, char **av)
{
	static const struct { const char *name; int scpu, ccpu; } place[] = {
		{ "one core", 0, 0 }, { "two cores", 0, 1 },
	};
	struct place pl;
	cpu_set_t cpus;
	int p, nplace = 1;

	if (ac > 1)
		rounds = strtol(av[1], NULL, 0);
	if (ac > 2)
		reps = (int)strtol(av[2], NULL, 0);
	if (rounds < 100 || reps < 1 || reps > MAXREPS) {
		fprintf(stderr, "usage: caps_sys_bench [ROUNDS >= 100 [REPS 1-%d]]\n",
		    MAXREPS);
		return (1);
	}
	if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0 &&
	    CPU_ISSET(0, &cpus) && CPU_ISSET(1, &cpus))
		nplace = 2;
	pl.samples = malloc(rounds * sizeof(double));
	if (pl.samples == NULL) {
		perror("malloc");
		return (1);
	}
	snprintf(dir, sizeof(dir), "/tmp/caps-sys-bench.XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return (1);
	}
	setenv("LIBCAPS_DIR", dir, 1);
	parent = getpid();
	atexit(cleanup);	/* on failures (exit(1)) too */
	signal(SIGPIPE, SIG_IGN);

	printf("CAPS v2 round trip, %d-byte payload, %ld round trips each (us)\n",
	    PAYLOAD, rounds);
	printf("%-10s %-14s %8s %8s %8s %12s\n", "placement", "what", "p50", "p99",
	    "mean", "p50 vs raw");
	for (p = 0; p < nplace; ++p) {
		struct result raw, cps;

		pl.scpu = place[p].scpu;
		pl.ccpu = place[p].ccpu;
		snprintf(pl.name, sizeof(pl.name), "rtt%d", p);
		raw = raw_rtt(&pl);
		cps = caps_rtt(&pl);
		printf("%-10s %-14s %8.2f %8.2f %8.2f %12s\n", place[p].name,
		    "unix socket", raw.p50, raw.p99, raw.mean, "1.00");
		printf("%-10s %-14s %8.2f %8.2f %8.2f %11.2fx\n", place[p].name,
		    "caps_sys", cps.p50, cps.p99, cps.mean, cps.p50 / raw.p50);
	}
	printf("\npipelined, %d outstanding, %d-byte payload, %ld replies, "
	    "median of %d runs (replies/s)\n", PIPE, PAYLOAD, rounds * 5, reps);
	printf("%-10s %12s %12s %12s %7s %13s\n", "placement", "unix socket",
	    "caps v1", "caps_sys", "v2/v1", "(runs)");
	for (p = 0; p < nplace; ++p) {
		double raw, v1[MAXREPS], v2[MAXREPS], ratio[MAXREPS], m1, m2;
		int r;

		pl.scpu = place[p].scpu;
		pl.ccpu = place[p].ccpu;
		snprintf(pl.name, sizeof(pl.name), "praw%d", p);
		raw = raw_pipelined(&pl);
		/* Alternate which goes first, so drift in the load is shared. */
		for (r = 0; r < reps; ++r) {
			snprintf(pl.name, sizeof(pl.name), "pv1_%d_%d", p, r);
			if (r % 2 == 0)
				v1[r] = pipelined(v1_server, v1_pipe_client, &pl);
			snprintf(pl.name, sizeof(pl.name), "pv2_%d_%d", p, r);
			v2[r] = pipelined(caps_server, caps_pipe_client, &pl);
			snprintf(pl.name, sizeof(pl.name), "pv1_%d_%d", p, r);
			if (r % 2 == 1)
				v1[r] = pipelined(v1_server, v1_pipe_client, &pl);
			ratio[r] = v2[r] / v1[r];
		}
		m1 = median(v1, reps);
		m2 = median(v2, reps);
		qsort(ratio, reps, sizeof(double), cmpd);
		printf("%-10s %12.0f %12.0f %12.0f %6.2fx  %.2f-%.2fx\n",
		    place[p].name, raw, m1, m2, m2 / m1, ratio[0],
		    ratio[reps - 1]);
	}
	if (nplace < 2)
		printf("(two cores skipped: cpus 0 and 1 are not both available)\n");
	return (0);		/* cleanup() removes the directory */
}
