/*
 * caps_bench -- CAPS request/reply against a plain Unix-socket ping-pong,
 * in one run, on one core and on two cores.
 *
 *	caps_bench [ROUNDS]
 *
 * Round trip: the caps1 pattern (lwkt_initmsg, lwkt_beginmsg,
 * caps_client_waitreply; the server lwkt_waitport + lwkt_replymsg) with
 * 64 bytes of payload, against two processes writing 64+80 bytes back and
 * forth over a Unix stream socket (the same bytes CAPS carries: our frame
 * header is 48 bytes, so raw gets the message image size). p50 and p99
 * from per-round-trip clock readings. Pipelined: 64 requests outstanding.
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
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

#define PAYLOAD		64
#define PIPE		64

struct bmsg {
	struct lwkt_msg	msg;
	char		data[PAYLOAD];
};

static long rounds = 20000;
static char dir[256];

/* ---- raw socket ping-pong ---- */

static struct result
raw_rtt(int scpu, int ccpu, double *samples)
{
	char buf[sizeof(struct bmsg)];
	int sv[2];
	pid_t pid;
	long i;

	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	pid = fork();
	if (pid == 0) {
		pin(scpu);
		close(sv[0]);
		while (readn(sv[1], buf, sizeof(buf)) == 0)
			write(sv[1], buf, sizeof(buf));
		_exit(0);
	}
	close(sv[1]);
	pin(ccpu);
	memset(buf, 1, sizeof(buf));
	for (i = 0; i < rounds / 10; ++i) {	/* warm up */
		write(sv[0], buf, sizeof(buf));
		readn(sv[0], buf, sizeof(buf));
	}
	for (i = 0; i < rounds; ++i) {
		double t0 = now();

		write(sv[0], buf, sizeof(buf));
		readn(sv[0], buf, sizeof(buf));
		samples[i] = now() - t0;
	}
	close(sv[0]);
	waitpid(pid, NULL, 0);
	return (summarize(samples, rounds));
}

static double
raw_pipelined(int scpu, int ccpu)
{
	char buf[sizeof(struct bmsg) * 16];
	size_t one = sizeof(struct bmsg);
	int sv[2];
	pid_t pid;
	long sent = 0, got = 0;
	double t0;

	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	pid = fork();
	if (pid == 0) {
		pin(scpu);
		close(sv[0]);
		while (readn(sv[1], buf, one) == 0)
			write(sv[1], buf, one);
		_exit(0);
	}
	close(sv[1]);
	pin(ccpu);
	memset(buf, 2, sizeof(buf));
	t0 = now();
	while (sent < PIPE) {
		write(sv[0], buf, one);
		++sent;
	}
	while (got < rounds * 5) {
		readn(sv[0], buf, one);
		++got;
		if (sent < rounds * 5) {
			write(sv[0], buf, one);
			++sent;
		}
	}
	t0 = now() - t0;
	close(sv[0]);
	waitpid(pid, NULL, 0);
	return (got / t0);
}

/* ---- CAPS ---- */

static pid_t
caps_server(int cpu, const char *name)
{
	pid_t pid = fork();
	char path[512];
	struct stat st;

	if (pid == 0) {
		caps_port_t port;
		lwkt_msg_t msg;

		pin(cpu);
		port = caps_service(name, (gid_t)-1, 0600, 0);
		if (port == NULL) {
			perror("caps_service");
			_exit(1);
		}
		while ((msg = lwkt_waitport(&port->lport, NULL)) != NULL) {
			msg->u.ms_result = ~msg->u.ms_result;
			lwkt_replymsg(msg, 0);
		}
		_exit(0);
	}
	snprintf(path, sizeof(path), "%s/%s/%s", dir,
	    geteuid() == 0 ? "root" : "users", name);
	if (geteuid() != 0)
		snprintf(path, sizeof(path), "%s/users/%d/%s", dir, (int)geteuid(), name);
	while (stat(path, &st) != 0)
		usleep(1000);
	return (pid);
}

/*
 * CAPS measurements run in a child process of their own, so each has a
 * fresh libcaps (one cpu per process, adopted on first use).
 */
static struct result
caps_rtt(int scpu, int ccpu, double *samples, const char *name)
{
	pid_t spid = caps_server(scpu, name), cpid;
	int fds[2];
	struct result r;

	pipe(fds);
	cpid = fork();
	if (cpid == 0) {
		struct lwkt_port rport;
		struct bmsg m;
		caps_port_t port;
		long i;

		pin(ccpu);
		lwkt_initport(&rport, curthread);
		port = caps_client(name, (uid_t)-1, 0);
		if (port == NULL) {
			perror("caps_client");
			_exit(1);
		}
		memset(m.data, 1, sizeof(m.data));
		for (i = -rounds / 10; i < rounds; ++i) {
			double t0 = now();

			lwkt_initmsg(&m.msg, &rport, 0);
			m.msg.u.ms_result = (int)i;
			m.msg.ms_msgsize = m.msg.ms_maxsize = sizeof(m);
			lwkt_beginmsg(&port->lport, &m.msg);
			if (caps_client_waitreply(port, &m.msg) == NULL ||
			    ~m.msg.u.ms_result != (int)i) {
				fprintf(stderr, "bad reply\n");
				_exit(2);
			}
			if (i >= 0)
				samples[i] = now() - t0;
		}
		r = summarize(samples, rounds);
		write(fds[1], &r, sizeof(r));
		caps_close(port);
		_exit(0);
	}
	close(fds[1]);
	if (readn(fds[0], &r, sizeof(r)) != 0)
		memset(&r, 0, sizeof(r));
	close(fds[0]);
	waitpid(cpid, NULL, 0);
	kill(spid, SIGTERM);
	waitpid(spid, NULL, 0);
	return (r);
}

static double
caps_pipelined(int scpu, int ccpu, const char *name)
{
	pid_t spid = caps_server(scpu, name), cpid;
	int fds[2];
	double rate = 0;

	pipe(fds);
	cpid = fork();
	if (cpid == 0) {
		static struct bmsg m[PIPE];
		struct lwkt_port rport;
		caps_port_t port;
		long sent = 0, got = 0, total = rounds * 5;
		double t0;
		int i;

		pin(ccpu);
		lwkt_initport(&rport, curthread);
		port = caps_client(name, (uid_t)-1, 0);
		if (port == NULL)
			_exit(1);
		t0 = now();
		for (i = 0; i < PIPE; ++i, ++sent) {
			lwkt_initmsg(&m[i].msg, &rport, 0);
			m[i].msg.ms_msgsize = m[i].msg.ms_maxsize = sizeof(m[i]);
			lwkt_beginmsg(&port->lport, &m[i].msg);
		}
		while (got < total) {
			lwkt_msg_t r = caps_client_waitreply(port, NULL);

			if (r == NULL)
				_exit(2);
			++got;
			if (sent < total) {
				lwkt_initmsg(r, &rport, 0);
				r->ms_msgsize = r->ms_maxsize = sizeof(struct bmsg);
				lwkt_beginmsg(&port->lport, r);
				++sent;
			}
		}
		rate = got / (now() - t0);
		write(fds[1], &rate, sizeof(rate));
		_exit(0);
	}
	close(fds[1]);
	if (readn(fds[0], &rate, sizeof(rate)) != 0)
		rate = 0;
	close(fds[0]);
	waitpid(cpid, NULL, 0);
	kill(spid, SIGTERM);
	waitpid(spid, NULL, 0);
	return (rate);
}

int
main(int ac, char **av)
{
	static const struct { const char *name; int scpu, ccpu; } place[] = {
		{ "one core", 0, 0 }, { "two cores", 0, 1 },
	};
	double *samples;
	cpu_set_t cpus;
	int p, nplace = 1;

	if (ac > 1)
		rounds = strtol(av[1], NULL, 0);
	if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0 &&
	    CPU_ISSET(0, &cpus) && CPU_ISSET(1, &cpus))
		nplace = 2;
	else
		printf("(two cores skipped: cpus 0 and 1 are not both available)\n");
	samples = malloc(rounds * sizeof(double));
	snprintf(dir, sizeof(dir), "/tmp/caps-bench.XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return (1);
	}
	setenv("LIBCAPS_DIR", dir, 1);
	signal(SIGPIPE, SIG_IGN);

	printf("round trip, %d-byte payload, %ld round trips each (us)\n", PAYLOAD, rounds);
	printf("%-10s %-14s %8s %8s %8s %12s\n", "placement", "what", "p50", "p99", "mean", "p50 vs raw");
	for (p = 0; p < nplace; ++p) {
		struct result raw = raw_rtt(place[p].scpu, place[p].ccpu, samples);
		struct result cps = caps_rtt(place[p].scpu, place[p].ccpu, samples,
		    p == 0 ? "rtt0" : "rtt1");

		printf("%-10s %-14s %8.2f %8.2f %8.2f %12s\n", place[p].name, "unix socket",
		    raw.p50, raw.p99, raw.mean, "1.00");
		printf("%-10s %-14s %8.2f %8.2f %8.2f %11.2fx\n", place[p].name, "CAPS",
		    cps.p50, cps.p99, cps.mean, cps.p50 / raw.p50);
	}
	printf("\npipelined, %d outstanding (requests/s)\n", PIPE);
	for (p = 0; p < nplace; ++p) {
		double raw = raw_pipelined(place[p].scpu, place[p].ccpu);
		double cps = caps_pipelined(place[p].scpu, place[p].ccpu,
		    p == 0 ? "pipe0" : "pipe1");

		printf("%-10s unix socket %10.0f   CAPS %10.0f   (%.2fx)\n",
		    place[p].name, raw, cps, cps / raw);
	}
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		system(cmd);
	}
	return (0);
}
