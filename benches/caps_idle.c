/*
 * caps_idle -- what idle connections cost a CAPS v1 service, beside a
 * minimal single-threaded epoll echo server over Unix stream sockets
 * written here, in one run.
 *
 *	caps_idle [N ...]		(default: 1000 10000)
 *
 * For each N, for each server: fork the server, serve one probe client
 * (what the server makes on first use is part of the start), record its
 * VmRSS and its open descriptors, then open N connections from client processes (at
 * most PER_CLIENT each). A CAPS connection is caps_client() (it returns
 * once the service answered the hello); an epoll connection is connect()
 * plus a one-byte echo (the same one round trip). "accept" is the time
 * until every client returned and the server's /proc/PID/fd holds all N
 * descriptors. Then: the server's VmRSS growth (and per connection), a
 * probe client's p50 round trip (64-byte payload) while they are held,
 * the clients' own memory per connection, and the server's VmRSS after
 * they all closed (and its descriptors went back to the start).
 *
 * Each is measured REPS times, the two servers taking turns, and the
 * run with the median accept time is shown (the machine may be busy).
 *
 * A row "CAPS burst": CAPS connections that each made BURST round trips
 * (64-byte payload; over shared memory, the default, so their rings were
 * touched) and then went quiet; measured QUIET_WAIT_US after the last
 * burst (the service gives a quiet connection's pages of its region back
 * between one and two seconds after its last record, and tells the
 * client to give the region up), the clients' memory too. The clients
 * wait as a v1 program with nothing to do waits: inside libcaps, their
 * cpu reading its sockets (idle_in_libcaps); a row "burst, usleep":
 * the same with clients that wait in usleep(), outside the library,
 * which then cannot run.
 *
 * The start of a burst row is taken after one warm-up connection of the
 * same kind (burst, quiet, close), as the probe is one round-trip
 * connection for every row: code and tables the service makes on first
 * use of those paths are not the connections'. When the two starts
 * differ, the VmRSS before the warm-up and the growth against it are
 * printed too. Each CAPS row prints the server's RssAnon, RssFile and
 * RssShmem (/proc/PID/status) at the start and the end, to tell heap
 * from code pages from mapped regions.
 *
 * A last row: CAPS connections that sent only half a hello (8 of its 16
 * bytes), measured well inside the service's 2 s hello deadline; its end
 * is taken, as for the other rows, once the server's descriptors went
 * back (the clients exit, the service reads end of file).
 *
 * RLIMIT_NOFILE is raised to the hard limit in every process; a run that
 * needs more than that says so and uses fewer connections.
 */
#define _GNU_SOURCE
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <sys/caps.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"

#define PAYLOAD		64
#define PER_CLIENT	2500
#define MAX_CLIENTS	16
#define PROBE_ROUNDS	2000
#define REPS		3
#define BURST		32
#define QUIET_WAIT_US	3500000
#define IDLE_NAP_US	200

struct bmsg {
	struct lwkt_msg	msg;
	char		data[PAYLOAD];
};

/* A server's resident memory by kind (KB, RssAnon, RssFile, RssShmem of
 * /proc/PID/status):
 * anonymous (its heap), file-backed (code of the program and the
 * library), shared memory (mapped regions). */
struct mem {
	long	anon, file, shmem;
};

static struct mem
mem_of(pid_t pid)
{
	char path[64], line[256];
	struct mem m = { -1, -1, -1 };
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return (m);
	while (fgets(line, sizeof(line), f) != NULL) {
		sscanf(line, "RssAnon: %ld", &m.anon);
		sscanf(line, "RssFile: %ld", &m.file);
		sscanf(line, "RssShmem: %ld", &m.shmem);
	}
	fclose(f);
	return (m);
}

/* What one measurement found. */
struct row {
	int	n;		/* connections held */
	double	accept_s;	/* time to have them all accepted */
	long	rss0_kb;	/* server VmRSS before */
	long	rss_kb;		/* server VmRSS while they are held */
	long	rss_end_kb;	/* server VmRSS after they closed */
	long	cold_kb;	/* server VmRSS before the warm-up cycle */
	struct mem m0, mend;	/* by kind at the start and the end */
	double	client_kb;	/* client memory per connection */
	double	probe_p50;	/* us */
	int	ok;
};

static char dir[256];
static char epoll_path[300];
static rlim_t nofile;

/* Raise RLIMIT_NOFILE to the hard limit; the limit now in force. */
static rlim_t
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return (1024);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	return (rl.rlim_cur);
}

/* How many descriptors `pid` has open. */
static int
nfds(pid_t pid)
{
	char path[64];
	struct dirent *e;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if ((d = opendir(path)) == NULL)
		return (-1);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			++n;
	closedir(d);
	return (n);
}

/* Wait (at most `secs`) until `pid` holds at least (more) / at most
 * (!more) `want` descriptors; 0 once it does. */
static int
wait_fds(pid_t pid, int want, int more, double secs)
{
	double end = now() + secs;

	for (;;) {
		int n = nfds(pid);

		if (n < 0)
			return (-1);
		if (more ? n >= want : n <= want)
			return (0);
		if (now() > end)
			return (-1);
		usleep(2000);
	}
}

static void
wait_path(const char *path)
{
	struct stat st;
	double end = now() + 10;

	while (stat(path, &st) != 0 && now() < end)
		usleep(1000);
}

static void
caps_path(char *buf, size_t len, const char *name)
{
	if (geteuid() == 0)
		snprintf(buf, len, "%s/root/%s", dir, name);
	else
		snprintf(buf, len, "%s/users/%d/%s", dir, (int)geteuid(), name);
}

/* The address of socket `path` (too long: a failure ends the process). */
static void
sun_of(struct sockaddr_un *sa, const char *path)
{
	size_t len = strlen(path);

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (len >= sizeof(sa->sun_path)) {
		fprintf(stderr, "caps_idle: %s: path too long\n", path);
		_exit(1);
	}
	memcpy(sa->sun_path, path, len);
}

static int
unix_connect(const char *path)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sun_of(&sa, path);
	if (fd < 0)
		return (-1);
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		if (errno == EAGAIN || errno == EINTR) {
			usleep(100);
			continue;
		}
		close(fd);
		return (-1);
	}
	return (fd);
}

/* ---- the servers ---- */

/* The baseline: accept everything, echo what comes, close at EOF. */
static pid_t
epoll_server(void)
{
	pid_t pid;

	snprintf(epoll_path, sizeof(epoll_path), "%s/echo.sock", dir);
	unlink(epoll_path);
	if ((pid = fork()) == 0) {
		struct epoll_event ev, evs[256];
		struct sockaddr_un sa;
		char buf[4096];
		int lfd, ep, i, n;

		raise_nofile();
		lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		sun_of(&sa, epoll_path);
		if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
		    listen(lfd, SOMAXCONN) != 0) {
			perror("epoll server");
			_exit(1);
		}
		ep = epoll_create1(EPOLL_CLOEXEC);
		ev.events = EPOLLIN;
		ev.data.fd = lfd;
		epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
		for (;;) {
			n = epoll_wait(ep, evs, 256, -1);
			for (i = 0; i < n; ++i) {
				int fd = evs[i].data.fd;

				if (fd == lfd) {
					int c;

					while ((c = accept4(lfd, NULL, NULL,
					    SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
						ev.events = EPOLLIN;
						ev.data.fd = c;
						epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
					}
					continue;
				}
				for (;;) {
					ssize_t r = read(fd, buf, sizeof(buf));

					if (r > 0) {
						write(fd, buf, r);
						continue;
					}
					if (r == 0 || errno != EAGAIN)
						close(fd);
					break;
				}
			}
		}
	}
	wait_path(epoll_path);
	return (pid);
}

static pid_t
caps_server(const char *name)
{
	char path[300];
	pid_t pid;

	if ((pid = fork()) == 0) {
		caps_port_t port;
		lwkt_msg_t msg;

		raise_nofile();
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
	caps_path(path, sizeof(path), name);
	wait_path(path);
	return (pid);
}

/* ---- the clients ---- */

enum what { EPOLL, CAPS, CAPS_BURST, CAPS_BURST_SLEEP, HALF_HELLO };

/* Wait `us` inside libcaps, as a v1 program whose threads have nothing
 * to do: lwkt_yield() looks at the cpu's sockets every 32 calls (what
 * an idle cpu does in its event loop), short naps between them. */
static void
idle_in_libcaps(long us)
{
	double end = now() + us / 1e6;

	while (now() < end) {
		lwkt_yield();
		usleep(IDLE_NAP_US);
	}
}

/* One round trip of `m` (result `i`) over `port`, replies to `rport`;
 * 0 if the reply came back right. */
static int
round_trip(caps_port_t port, struct lwkt_port *rport, struct bmsg *m, int i)
{
	lwkt_initmsg(&m->msg, rport, 0);
	m->msg.u.ms_result = i;
	m->msg.ms_msgsize = m->msg.ms_maxsize = sizeof(*m);
	lwkt_beginmsg(&port->lport, &m->msg);
	if (caps_client_waitreply(port, &m->msg) == NULL ||
	    ~m->msg.u.ms_result != i)
		return (-1);
	return (0);
}

/* BURST round trips over `port`; 0 if all came back. */
static int
burst(caps_port_t port, struct lwkt_port *rport)
{
	struct bmsg m;
	int i;

	memset(m.data, 1, sizeof(m.data));
	for (i = 0; i < BURST; ++i)
		if (round_trip(port, rport, &m, i) != 0)
			return (-1);
	return (0);
}

/*
 * A client process: open `n` connections of kind `w`, write its memory
 * growth (KB, a long; -1 on failure) to `rep`, hold them until `hold`
 * reads end of file (`hold_w`, its write end, is closed here), then exit
 * (closing them).
 */
static pid_t
client(enum what w, const char *name, int n, int rep, int hold, int hold_w)
{
	pid_t pid;

	if ((pid = fork()) == 0) {
		char path[300], c = 'x';
		long before, grown = 0;
		struct lwkt_port rport;
		int i;

		close(hold_w);
		lwkt_initport(&rport, curthread);
		if (raise_nofile() < (rlim_t)n + 32)
			grown = -1;
		caps_path(path, sizeof(path), name);
		before = rss_kb(getpid());
		for (i = 0; i < n && grown == 0; ++i) {
			if (w == CAPS || w == CAPS_BURST || w == CAPS_BURST_SLEEP) {
				caps_port_t port = caps_client(name, (uid_t)-1, 0);

				if (port == NULL) {
					perror("caps_client");
					grown = -1;
				} else if (w != CAPS && burst(port, &rport) != 0) {
					fprintf(stderr, "caps_idle: a burst failed\n");
					grown = -1;
				}
				continue;
			}
			int fd = unix_connect(w == EPOLL ? epoll_path : path);

			if (fd < 0) {
				perror("connect");
				grown = -1;
			} else if (w == EPOLL) {
				if (write(fd, &c, 1) != 1 || readn(fd, &c, 1) != 0)
					grown = -1;
			} else {
				/* The first 8 bytes of a v1 client hello. */
				static const unsigned char half[8] =
				    { 'C', 'A', 'P', 'S', 1, 0, 1, 0 };

				if (write(fd, half, sizeof(half)) != sizeof(half))
					grown = -1;
			}
		}
		/* After a burst: once the connections went quiet. */
		if (grown == 0 && w == CAPS_BURST)
			idle_in_libcaps(QUIET_WAIT_US);
		if (grown == 0 && w == CAPS_BURST_SLEEP)
			usleep(QUIET_WAIT_US);
		if (grown == 0)
			grown = rss_kb(getpid()) - before;
		write(rep, &grown, sizeof(grown));
		while (read(hold, &c, 1) > 0)
			;
		_exit(0);
	}
	return (pid);
}

/* A probe client: p50 round trip (us) over a connection of its own. */
static double
probe(enum what w, const char *name)
{
	double *s = malloc(PROBE_ROUNDS * sizeof(double));
	struct result r = { 0 };
	int fds[2];
	pid_t pid;

	pipe(fds);
	if ((pid = fork()) == 0) {
		struct lwkt_port rport;
		struct bmsg m;
		caps_port_t port = NULL;
		int fd = -1, i;

		if (w == CAPS) {
			lwkt_initport(&rport, curthread);
			port = caps_client(name, (uid_t)-1, 0);
		} else
			fd = unix_connect(epoll_path);
		if (port == NULL && fd < 0)
			_exit(1);
		memset(m.data, 1, sizeof(m.data));
		for (i = -PROBE_ROUNDS / 10; i < PROBE_ROUNDS; ++i) {
			double t0 = now();

			if (w == CAPS) {
				if (round_trip(port, &rport, &m, i) != 0)
					_exit(2);
			} else if (write(fd, &m, sizeof(m)) != sizeof(m) ||
			    readn(fd, &m, sizeof(m)) != 0)
				_exit(2);
			if (i >= 0)
				s[i] = now() - t0;
		}
		r = summarize(s, PROBE_ROUNDS);
		write(fds[1], &r, sizeof(r));
		_exit(0);
	}
	close(fds[1]);
	if (readn(fds[0], &r, sizeof(r)) != 0)
		r.p50 = -1;
	close(fds[0]);
	waitpid(pid, NULL, 0);
	free(s);
	return (r.p50);
}

/* One measurement: `n` connections of kind `w` to a fresh server. */
static struct row
measure(enum what w, int n, const char *name)
{
	pid_t spid = w == EPOLL ? epoll_server() : caps_server(name);
	pid_t kids[MAX_CLIENTS];
	int nkids = (n + PER_CLIENT - 1) / PER_CLIENT, rep[2], hold[2], k, fd0;
	struct row row = { .n = n, .ok = 1 };
	long grown, total = 0;
	double t0;

	/* The start: a server that has served one client (what it makes on
	 * first use is not counted as the connections'). */
	probe(w == EPOLL ? EPOLL : CAPS, name);
	usleep(100000);
	fd0 = nfds(spid);
	row.rss0_kb = row.cold_kb = rss_kb(spid);
	/* A burst row: one warm-up connection of the same kind first
	 * (burst, quiet, close), so that the start counts the code of those
	 * paths, paged in once per process, as the probe does for the
	 * round trip (both starts are printed). */
	if (w == CAPS_BURST || w == CAPS_BURST_SLEEP) {
		pipe(rep);
		pipe(hold);
		kids[0] = client(w, name, 1, rep[1], hold[0], hold[1]);
		close(rep[1]);
		close(hold[0]);
		if (readn(rep[0], &grown, sizeof(grown)) != 0 || grown < 0)
			row.ok = 0;
		close(hold[1]);
		close(rep[0]);
		waitpid(kids[0], NULL, 0);
		if (wait_fds(spid, fd0 + 4, 0, 30) != 0)
			row.ok = 0;
		usleep(300000);
		row.rss0_kb = rss_kb(spid);
	}
	row.m0 = mem_of(spid);
	pipe(rep);
	pipe(hold);
	t0 = now();
	for (k = 0; k < nkids; ++k) {
		int m = k == nkids - 1 ? n - k * PER_CLIENT : PER_CLIENT;

		kids[k] = client(w, name, m, rep[1], hold[0], hold[1]);
	}
	close(rep[1]);
	close(hold[0]);
	for (k = 0; k < nkids; ++k) {
		if (readn(rep[0], &grown, sizeof(grown)) != 0 || grown < 0)
			row.ok = 0;
		else
			total += grown;
	}
	if (wait_fds(spid, fd0 + n, 1, 30) != 0)
		row.ok = 0;
	row.accept_s = now() - t0;
	/* (a burst row: every client reported after its quiet wait) */
	usleep(200000);
	row.rss_kb = rss_kb(spid);
	row.client_kb = (double)total / n;
	if (w != HALF_HELLO)
		row.probe_p50 = probe(w == EPOLL ? EPOLL : CAPS, name);
	close(hold[1]);
	for (k = 0; k < nkids; ++k)
		waitpid(kids[k], NULL, 0);
	/* (+4: descriptors a CAPS service makes on first use, its hello
	 * timer among them) */
	if (wait_fds(spid, fd0 + 4, 0, 30) != 0)
		row.ok = 0;
	usleep(300000);
	row.rss_end_kb = rss_kb(spid);
	row.mend = mem_of(spid);
	close(rep[0]);
	kill(spid, SIGKILL);
	waitpid(spid, NULL, 0);
	return (row);
}

static int
by_accept(const void *a, const void *b)
{
	double x = ((const struct row *)a)->accept_s;
	double y = ((const struct row *)b)->accept_s;

	return (x < y ? -1 : x > y);
}

/* `measure` REPS times, the epoll server and CAPS taking turns: the run
 * with the median accept time of each (the machine may be busy). */
static void
measure_both(int n, const char *name, struct row *e, struct row *c)
{
	struct row er[REPS], cr[REPS];
	int r;

	for (r = 0; r < REPS; ++r) {
		char nm[48];

		/* a service of its own each time (a killed one leaves its
		 * socket behind) */
		snprintf(nm, sizeof(nm), "%s-%d", name, r);
		er[r] = measure(EPOLL, n, NULL);
		cr[r] = measure(CAPS, n, nm);
	}
	qsort(er, REPS, sizeof(er[0]), by_accept);
	qsort(cr, REPS, sizeof(cr[0]), by_accept);
	*e = er[REPS / 2];
	*c = cr[REPS / 2];
}

static void
print_row(const char *what, const struct row *r, const struct row *base)
{
	double kb = (double)(r->rss_kb - r->rss0_kb) / r->n;

	printf("%-12s %6d %9.1f %10.2f %9.2f %9.2f %9.1f %7ld %7ld %7.1f  %s",
	    what, r->n, (r->rss_kb - r->rss0_kb) / 1024.0, kb, r->client_kb,
	    r->accept_s * 1e3, r->probe_p50, r->rss0_kb, r->rss_end_kb,
	    r->rss0_kb > 0 ? 100.0 * (r->rss_end_kb - r->rss0_kb) / r->rss0_kb : 0.0,
	    r->ok ? "" : "(incomplete) ");
	if (base != NULL) {
		double bkb = (double)(base->rss_kb - base->rss0_kb) / base->n;

		/* The epoll server's VmRSS may not grow at all (its
		 * connections are kernel memory only). */
		if (bkb > 0)
			printf("x%.1f mem, ", kb / bkb);
		else
			printf("(epoll +0 KB) ");
		printf("x%.2f accept", r->accept_s / base->accept_s);
		if (r->probe_p50 > 0 && base->probe_p50 > 0)
			printf(", x%.2f p50", r->probe_p50 / base->probe_p50);
	}
	printf("\n");
	if (r->cold_kb != r->rss0_kb)
		printf("%-12s start before the warm-up cycle %ld KB: end %+.1f%% of it\n",
		    "", r->cold_kb, 100.0 * (r->rss_end_kb - r->cold_kb) / r->cold_kb);
	if (r->m0.anon >= 0 && r->mend.anon >= 0)
		printf("%-12s KB anon/file/shmem: start %ld/%ld/%ld, end %ld/%ld/%ld\n",
		    "", r->m0.anon, r->m0.file, r->m0.shmem, r->mend.anon,
		    r->mend.file, r->mend.shmem);
}

int
main(int ac, char **av)
{
	int sizes[8] = { 1000, 10000 }, nsizes = 2, i;
	char cmd[300];

	if (ac > 1) {
		for (nsizes = 0; nsizes < ac - 1 && nsizes < 8; ++nsizes)
			sizes[nsizes] = atoi(av[nsizes + 1]);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	nofile = raise_nofile();
	snprintf(dir, sizeof(dir), "/tmp/caps-idle.XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return (1);
	}
	setenv("LIBCAPS_DIR", dir, 1);
	signal(SIGPIPE, SIG_IGN);

	printf("idle connections: one server, clients in processes of %d connections each\n",
	    PER_CLIENT);
	printf("RLIMIT_NOFILE: %llu\n", (unsigned long long)nofile);
	printf("%-12s %6s %9s %10s %9s %9s %9s %7s %7s %7s  %s\n", "server",
	    "conns", "RSS(MB)", "KB/conn", "cli KB/c", "accept ms", "probe p50",
	    "KB 0", "KB end", "end %", "CAPS/epoll");
	for (i = 0; i < nsizes; ++i) {
		int n = sizes[i];
		struct row e, c;
		char name[32];

		if ((rlim_t)n + 64 > nofile) {
			printf("RLIMIT_NOFILE %llu (hard) is too low for %d connections: "
			    "%d instead\n", (unsigned long long)nofile, n,
			    (int)nofile - 64);
			n = (int)nofile - 64;
		}
		if (n > PER_CLIENT * MAX_CLIENTS)
			n = PER_CLIENT * MAX_CLIENTS;
		snprintf(name, sizeof(name), "idle%d", n);
		measure_both(n, name, &e, &c);
		print_row("epoll echo", &e, NULL);
		print_row("CAPS v1", &c, &e);
		snprintf(name, sizeof(name), "burst%d", n);
		c = measure(CAPS_BURST, n, name);
		print_row("CAPS burst", &c, &e);
		snprintf(name, sizeof(name), "bsleep%d", n);
		c = measure(CAPS_BURST_SLEEP, n, name);
		print_row("burst,usleep", &c, &e);
		if (i == 0) {
			snprintf(name, sizeof(name), "half%d", n);
			c = measure(HALF_HELLO, n, name);
			print_row("CAPS half", &c, &e);
		}
	}
	printf("(RSS: the server's VmRSS growth while the connections are held;"
	    " KB 0 / KB end: its VmRSS before them and after they closed, end %%:"
	    " the growth that stayed; cli KB/c: the clients' VmRSS growth per"
	    " connection; probe p50 in us; burst: each connection made %d round"
	    " trips, then was quiet %.1f s, its client waiting in libcaps (usleep:"
	    " outside it); half: only 8 bytes of the hello sent)\n",
	    BURST, QUIET_WAIT_US / 1e6);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	system(cmd);
	return (0);
}
