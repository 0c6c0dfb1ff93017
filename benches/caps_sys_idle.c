/*
 * caps_sys_idle -- what idle connections cost a CAPS v2 service's round
 * trips (issue 17).
 *
 *	caps_sys_idle [-b] [ROUNDS [N ...]]	(default: 2000 0 1000 10000)
 *
 * For each N: fork a v2 server (caps_sys_service; caps_sys_wait, then
 * caps_sys_reply with the request's bytes; disposes ignored), open N
 * client connections from holder processes (at most PER_HOLDER each;
 * each caps_sys_client returns once the service answered its hello) that
 * then sit idle (with -b: after one round trip each, over shared memory,
 * the default, so that each has its rings; measured QUIET_WAIT seconds
 * later, when the service has let the quiet ones go dormant), and make
 * ROUNDS round trips (64-byte payload) from one
 * probe client. Warm-up: WARMUP round trips first. Printed per round
 * trip: the server's system calls (all of them, and poll/ppoll,
 * epoll_wait, recvfrom), counted by `perf stat -p` (started by this
 * program; without perf, only the cpu time is printed), and the server's
 * cpu time (user + system, /proc/PID/stat: clock ticks, coarse).
 * The counts do not depend on the machine's speed the way times do, but
 * on how often the server slept (each sleep is a poll and a wakeup), so
 * they move a little from run to run.
 *
 * Services live in a private rendezvous directory (LIBCAPS_DIR = a
 * mkdtemp directory, removed at the end).
 */
#define _GNU_SOURCE
#include <sys/types.h>
#include <sys/caps.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"

#define NAME		"caps_sys_idle"
#define PAYLOAD		64
#define PER_HOLDER	1000
#define WARMUP		200
#define MAXHOLDERS	64
#define QUIET_WAIT	3	/* s: the quiet sweep runs every second */
#define EVENTS		"raw_syscalls:sys_enter,syscalls:sys_enter_poll," \
			"syscalls:sys_enter_ppoll,syscalls:sys_enter_epoll_wait," \
			"syscalls:sys_enter_recvfrom,syscalls:sys_enter_recvmsg"

static char dir[256];
static int burst;

static void
die(const char *what)
{
	fprintf(stderr, "caps_sys_idle: %s (%s)\n", what, strerror(errno));
	_exit(2);
}

static void
serve(void)
{
	char buf[PAYLOAD];
	struct caps_msgid mid;
	int id, n;

	id = caps_sys_service(NAME, getuid(), getgid(), 0, CAPF_ANYCLIENT);
	if (id < 0)
		die("caps_sys_service");
	for (;;) {
		n = caps_sys_wait(id, buf, sizeof(buf), &mid, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("server caps_sys_wait");
		}
		if (mid.c_state == CAPMS_REQUEST &&
		    caps_sys_reply(id, buf, n, mid.c_id) < 0)
			die("caps_sys_reply");
	}
}

static int
connect_client(void)
{
	int i, id;

	/* The server may not be listening yet. */
	for (i = 0; i < 5000; i++) {
		id = caps_sys_client(NAME, getuid(), getgid(), 0, CAPF_ANYCLIENT);
		if (id >= 0)
			return (id);
		usleep(1000);
	}
	die("caps_sys_client");
	return (-1);
}

/* Open n idle connections, say so on fd ready, then wait to be killed. */
static void round_trips(int, long);

static void
hold(int n, int ready)
{
	int i, id;

	for (i = 0; i < n; i++) {
		id = connect_client();
		if (burst)
			round_trips(id, 1);
	}
	if (write(ready, "x", 1) != 1)
		die("write");
	for (;;)
		pause();
}

static void
round_trips(int id, long rounds)
{
	char out[PAYLOAD], in[PAYLOAD];
	struct caps_msgid got;
	long r;
	off_t mid;
	int n;

	for (r = 0; r < rounds; r++) {
		memset(out, (int)(r & 0xff), sizeof(out));
		mid = caps_sys_put(id, out, sizeof(out));
		if (mid < 0)
			die("caps_sys_put");
		do {
			n = caps_sys_wait(id, in, sizeof(in), &got, NULL);
		} while (n < 0 && errno == EINTR);
		if (n != PAYLOAD || got.c_id != mid || memcmp(in, out, PAYLOAD) != 0)
			die("bad reply");
	}
}

/* Start perf counting the server's system calls into file out. */
static pid_t
start_perf(pid_t server, const char *out)
{
	char p[32];
	pid_t pid;

	snprintf(p, sizeof(p), "%d", (int)server);
	pid = fork();
	if (pid == 0) {
		execlp("perf", "perf", "stat", "-x", ",", "-o", out, "-e", EVENTS,
		    "-p", p, (char *)NULL);
		_exit(127);
	}
	/* perf attaches in well under a second. */
	sleep(1);
	return (pid);
}

/* Print perf's counts in file out, per round trip. */
static void
print_perf(const char *out, long rounds)
{
	char line[512], name[128];
	double v;
	FILE *f;

	f = fopen(out, "r");
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%lf,,%127[^,]", &v, name) == 2)
			printf("  %-32s %10.2f\n", name, v / rounds);
	}
	fclose(f);
	unlink(out);
}

static void
run(long rounds, int n)
{
	pid_t server, holders[MAXHOLDERS], perf;
	int fds[2], h, nh, id, st;
	long long t0, t1;
	char c, out[300];

	server = fork();
	if (server == 0)
		serve();
	if (pipe(fds) < 0)
		die("pipe");
	nh = (n + PER_HOLDER - 1) / PER_HOLDER;
	if (nh > MAXHOLDERS)
		die("too many connections");
	for (h = 0; h < nh; h++) {
		holders[h] = fork();
		if (holders[h] == 0) {
			close(fds[0]);
			hold(h < nh - 1 ? PER_HOLDER : n - PER_HOLDER * (nh - 1), fds[1]);
		}
	}
	for (h = 0; h < nh; h++)
		if (read(fds[0], &c, 1) != 1)
			die("holder");
	if (burst)
		sleep(QUIET_WAIT);
	id = connect_client();
	round_trips(id, WARMUP);
	snprintf(out, sizeof(out), "%s/perf.out", dir);
	perf = start_perf(server, out);
	t0 = cpu_ticks(server);
	round_trips(id, rounds);
	t1 = cpu_ticks(server);
	if (t0 < 0 || t1 < 0)
		die("stat");
	kill(perf, SIGINT);
	waitpid(perf, &st, 0);
	printf("%d idle connections%s, %ld round trips: server cpu %.1f us per round trip\n",
	    n, burst ? " (one round trip each)" : "", rounds, (double)(t1 - t0) * 1e6 / sysconf(_SC_CLK_TCK) / rounds);
	printf("  server system calls per round trip:\n");
	print_perf(out, rounds);
	fflush(stdout);
	caps_sys_close(id);
	for (h = 0; h < nh; h++) {
		kill(holders[h], SIGKILL);
		waitpid(holders[h], NULL, 0);
	}
	kill(server, SIGKILL);
	waitpid(server, NULL, 0);
	close(fds[0]);
	close(fds[1]);
}

int
main(int argc, char **argv)
{
	static const int def[] = { 0, 1000, 10000 };
	struct rlimit rl;
	long rounds = 2000;
	int i;

	if (argc > 1 && strcmp(argv[1], "-b") == 0) {
		burst = 1;
		argc--;
		argv++;
	}
	if (argc > 1)
		rounds = atol(argv[1]);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	snprintf(dir, sizeof(dir), "/tmp/caps_sys_idle.XXXXXX");
	if (mkdtemp(dir) == NULL)
		die("mkdtemp");
	setenv("LIBCAPS_DIR", dir, 1);
	if (argc > 2)
		for (i = 2; i < argc; i++)
			run(rounds, atoi(argv[i]));
	else
		for (i = 0; i < 3; i++)
			run(rounds, def[i]);
	rm_tree(dir);
	return (0);
}
