/*
 * caps_scale -- N client processes doing round trips at once against one
 * server, for N = 1, 2, 4, ... 128: CAPS v1 (caps_service/caps_client),
 * CAPS v2 (caps_sys_service/caps_sys_client) and, as the baseline, a
 * minimal single-threaded epoll echo server over Unix stream sockets
 * written here.
 *
 *	caps_scale [SECONDS [MAXCLIENTS [MINCLIENTS [PASSES]]]]
 *
 * Every row runs for a fixed time: the clients connect, then all start
 * together; after a warm-up (a quarter of SECONDS, at most 0.25 s) round
 * trips are counted and timed for SECONDS (default 1). A round trip is one
 * request of 64 bytes of payload and its reply (the epoll clients send the
 * 112 bytes a CAPS frame carries: our 48-byte header and the payload), one
 * outstanding per client. Columns:
 *
 *	rt/s		round trips per second, all clients together
 *	vs epoll	rt/s over the epoll server's in the same N
 *	p50, p99	latency of one round trip (us), every client's samples
 *			merged (log-linear histogram, 1/16 of a power of two)
 *	p50 vs		p50 over the epoll server's in the same N
 *	fair		the fewest round trips one client made over the mean
 *			(1.00: every client got the same share)
 *	srv cpu%	the server's utime+stime (/proc/PID/stat) over the
 *			window, per cent of one core
 *	us/rt		the server's cpu time per round trip
 *	rss KB		the server's VmRSS at the end of the window
 *	srv cs		the server's context switches (voluntary and not, all
 *			its threads: /proc/PID/task/TID/status) per round trip
 *	cli cs		the clients' context switches (getrusage) per round trip
 *	cli us		the clients' cpu time (getrusage) per round trip
 *	srv sc		the server's system calls per round trip, counted by
 *			`perf stat -e raw_syscalls:sys_enter -p PID` over the
 *			window; only with CAPS_SCALE_PERF=1 in the environment
 *			("-" otherwise or if perf could not count); the
 *			warm-up is counted too and the count scaled by it
 *	cli sc		the same for all the clients together
 *
 * Per-round-trip counts hold still where rt/s does not on a shared
 * machine: compare those.
 *
 * PASSES (default 1) runs the whole table that many times in turn (every
 * N, every kind, then again), printing each pass; with two or more it
 * then prints the median of the passes for every cell, with a last
 * column "spread": (max - min) / median of the row's rt/s, in per cent
 * ("vs epoll" and "p50 vs" are the medians of each pass's own ratio:
 * the epoll row ran seconds before, under the same load). Last, for
 * every kind, the largest N measured against the smallest: each pass's
 * ratio of rt/s, of p50 and p99 over the ratio of clients (1.00: they
 * grew as fast as the number of clients), and of the server's and the
 * clients' cpu per round trip, as the median of the passes with a 95%
 * interval of that median (distribution-free: two order statistics;
 * six passes or more, else the range). Then the same ratios of v1 and
 * v2 divided by the epoll server's of the same pass (the "ratio of
 * ratios": below 1 for rt/s, the kind scales worse than the baseline
 * under the same machine), and a verdict on rt/s for a fall of 10%:
 * "does not fall" when the interval lies above 0.90, "falls" when
 * below, else undecided.
 *
 * The rows of one N run back to back, epoll's beside the others, so
 * they share the machine's state; every other pass runs the Ns from the
 * largest down and the kinds in reverse order, so a load that drifts
 * during a pass favours neither. CAPS_SCALE_NS (a list such as
 * "8,128") runs only those Ns: `CAPS_SCALE_NS=8,128
 * CAPS_SCALE_KINDS=epoll,v1 caps_scale 0.5 128 8 12` takes some two
 * minutes. Whole rows, seconds apart, still see different machines
 * when other work shares it; CAPS_SCALE_SLICE=MS (caps_scale_slice.h)
 * runs every set at once and interleaves them in slices of MS ms:
 * `CAPS_SCALE_SLICE=100 CAPS_SCALE_NS=8,128 CAPS_SCALE_KINDS=epoll,v1
 * caps_scale 1 128 8 40` is the verdict of issue 17 point 2 in 20 s.
 *
 * With CAPS_SCALE_COUNTS set in the environment, each row's round trips
 * per client are printed on stderr. CAPS_SCALE_KINDS (a list of epoll,
 * v1, v2; default all three) picks the servers measured.
 *
 * CAPS_SCALE_SCHED=batch (or batch-clients, batch-server) runs the clients
 * and the server (or only the clients, only the server) under SCHED_BATCH
 * (sched(7): a task woken under it does not preempt the one running; any
 * user may choose it): to see what wake-up preemption costs. The header
 * line says which.
 *
 * Nothing is pinned: the machine's scheduler places the server and the
 * clients. Services live in a private rendezvous directory (LIBCAPS_DIR =
 * a mkdtemp directory, removed at the end). Every reply is checked; a
 * client that gets a wrong one fails the row.
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
#include <sys/mman.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
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
#define MAXCLIENTS	128
#define SUB		16	/* histogram buckets per power of two */
#define NBUCKET		(40 * SUB)

enum kind { EPOLL, V1, V2, NKIND };
static const char *kind_name[NKIND] = { "epoll", "CAPS v1", "CAPS v2" };

struct client_out {
	long		count;		/* round trips in the window */
	long		csw;		/* its context switches in the window */
	double		cpu_us;		/* its cpu time (user + system) in the window */
	int		failed;
	uint64_t	hist[NBUCKET];	/* their latencies */
};

/* Shared by the parent and every client (MAP_SHARED). */
struct board {
	int		ready;		/* clients connected (atomic) */
	int		go;		/* start: the window is set */
	double		start, end;	/* the window, now_ns() */
	struct client_out c[MAXCLIENTS];
};

static struct board *board;
static double seconds = 1.0;
static char dir[256];
static int row;			/* makes service names unique */

/* ---- latency histogram ---- */

static int
bucket(uint64_t ns)
{
	int e, i;

	if (ns < SUB)
		return ((int)ns);
	e = 63 - __builtin_clzll(ns);	/* >= 4 */
	i = (e - 3) * SUB + (int)((ns >> (e - 4)) & (SUB - 1));
	return (i < NBUCKET ? i : NBUCKET - 1);
}

/* The middle of bucket i, in ns. */
static double
bucket_mid(int i)
{
	int e, sub;

	if (i < SUB)
		return (i);
	e = i / SUB + 3;
	sub = i % SUB;
	return ((double)((uint64_t)(SUB + sub) << (e - 4)) +
	    (double)((uint64_t)1 << (e - 4)) / 2);
}

/* The latency (us) below which fraction q of the merged samples lie. */
static double
percentile(const uint64_t *h, uint64_t total, double q)
{
	uint64_t want = (uint64_t)(q * (double)total), seen = 0;
	int i;

	for (i = 0; i < NBUCKET; ++i) {
		seen += h[i];
		if (seen > want)
			return (bucket_mid(i) / 1e3);
	}
	return (0);
}

/* ---- plumbing ---- */

static void
die(const char *what)
{
	fprintf(stderr, "caps_scale: %s\n", what);
	exit(1);
}

static void
sleep_until(double t_ns)
{
	double d;

	while ((d = t_ns - now_ns()) > 0) {
		struct timespec ts = { (time_t)(d / 1e9), (long)((long long)d % 1000000000LL) };

		nanosleep(&ts, NULL);
	}
}

/* This process's context switches; its cpu time (us) in *cpu_us. */
static long
own_ctx_switches(double *cpu_us)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	*cpu_us = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
	    ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
	return (ru.ru_nvcsw + ru.ru_nivcsw);
}

/*
 * With CAPS_SCALE_PERF=1: `perf stat` counting the system calls of the
 * processes pids[0..n) (all their threads) into file out, until
 * perf_stop. 0 if not asked for or perf could not start.
 */
static pid_t
perf_start(const pid_t *pids, int n, const char *out)
{
	static char list[MAXCLIENTS * 12];
	const char *e = getenv("CAPS_SCALE_PERF");
	size_t at = 0;
	pid_t p;
	int i;

	if (e == NULL || strcmp(e, "1") != 0)
		return (0);
	for (i = 0; i < n; ++i)
		at += (size_t)snprintf(list + at, sizeof(list) - at, "%s%d",
		    i > 0 ? "," : "", (int)pids[i]);
	unlink(out);
	if ((p = fork()) < 0)
		return (0);
	if (p == 0) {
		int devnull = open("/dev/null", O_RDWR);

		dup2(devnull, 1);
		dup2(devnull, 2);
		execlp("perf", "perf", "stat", "-x,", "-o", out, "-e",
		    "raw_syscalls:sys_enter", "-p", list, (char *)NULL);
		_exit(127);
	}
	return (p);
}

/* Stop perf p (SIGINT: it writes its count) and return the count in
 * file out, or -1. */
static long long
perf_stop(pid_t p, const char *out)
{
	char line[256];
	long long n = -1;
	FILE *f;

	if (p <= 0)
		return (-1);
	kill(p, SIGINT);
	reap(p);
	if ((f = fopen(out, "r")) == NULL)
		return (-1);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, "raw_syscalls:sys_enter") != NULL &&
		    sscanf(line, "%lld,", &n) == 1)
			break;
	fclose(f);
	return (n);
}

#include "caps_scale_kinds.h"

static void
client(enum kind k, int me)
{
	struct client_out *out = &board->c[me];
	struct conn c;
	uint64_t seq = (uint64_t)me << 40;
	double t0, t1;

	alarm(30);		/* a lost reply fails the row, not the run */
	sched_as(0);
	if (connect_to(k, &c) != 0) {
		out->failed = 1;
		_exit(1);
	}
	__atomic_add_fetch(&board->ready, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&board->go, __ATOMIC_ACQUIRE))
		usleep(1000);
	long csw0 = -1;
	double cpu0 = 0, cpu1;

	while ((t0 = now_ns()) < board->end) {
		if (csw0 < 0 && t0 >= board->start)
			csw0 = own_ctx_switches(&cpu0);
		if (round_trip(k, &c, seq++) != 0) {
			out->failed = 1;
			_exit(1);
		}
		t1 = now_ns();
		if (t0 >= board->start) {
			++out->hist[bucket((uint64_t)(t1 - t0))];
			++out->count;
		}
	}
	if (csw0 >= 0) {
		out->csw = own_ctx_switches(&cpu1) - csw0;
		out->cpu_us = cpu1 - cpu0;
	}
	_exit(0);
}

/* ---- one row ---- */

struct rowres {
	double	rate, p50, p99, fair, cpu, us_per_rt;
	double	srv_cs, cli_cs, srv_sc;	/* per round trip; srv_sc < 0: not counted */
	double	cli_us;			/* clients' cpu time per round trip */
	double	cli_sc;			/* clients' system calls per round trip, or < 0 */
	long	rss;
	int	ok;
};

static struct rowres
run_row(enum kind k, int n)
{
	static uint64_t merged[NBUCKET];
	pid_t spid, cpid[MAXCLIENTS];
	struct rowres r;
	long long c0, c1, s0, s1, sc, csc;
	char sout[300], cout[300];
	double warm, deadline;
	long total = 0, least = -1, ccsw = 0;
	double ccpu = 0;
	pid_t perf, cperf;
	int i, b;

	memset(&r, 0, sizeof(r));
	memset(board, 0, sizeof(*board));
	++row;
	spid = k == EPOLL ? epoll_server() : k == V1 ? v1_server() : v2_server();
	for (i = 0; i < n; ++i) {
		cpid[i] = xfork();
		if (cpid[i] == 0)
			client(k, i);
	}
	deadline = now_ns() + 30e9;
	while (__atomic_load_n(&board->ready, __ATOMIC_SEQ_CST) < n && now_ns() < deadline)
		usleep(1000);
	r.ok = board->ready == n;
	warm = seconds / 4 < 0.25 ? seconds / 4 : 0.25;
	board->start = now_ns() + warm * 1e9;
	board->end = board->start + seconds * 1e9;
	__atomic_store_n(&board->go, 1, __ATOMIC_RELEASE);
	snprintf(sout, sizeof(sout), "%s/perf.server", dir);
	snprintf(cout, sizeof(cout), "%s/perf.clients", dir);
	perf = perf_start(&spid, 1, sout);
	cperf = perf_start(cpid, n, cout);
	sleep_until(board->start);
	c0 = cpu_ticks(spid);
	s0 = ctx_switches(spid);
	sleep_until(board->end);
	c1 = cpu_ticks(spid);
	s1 = ctx_switches(spid);
	/* perf counted a little before and after the window too. */
	sc = perf_stop(perf, sout);
	csc = perf_stop(cperf, cout);
	r.rss = rss_kb(spid);
	for (i = 0; i < n; ++i) {
		if (!r.ok)
			kill(cpid[i], SIGKILL);
		if (!reap(cpid[i]))
			board->c[i].failed = 1;	/* killed by its watchdog */
	}
	kill(spid, SIGTERM);
	reap(spid);
	if (k == EPOLL)
		unlink(sock_path);
	memset(merged, 0, sizeof(merged));
	for (i = 0; i < n; ++i) {
		struct client_out *o = &board->c[i];

		if (o->failed)
			r.ok = 0;
		total += o->count;
		ccsw += o->csw;
		ccpu += o->cpu_us;
		if (least < 0 || o->count < least)
			least = o->count;
		for (b = 0; b < NBUCKET; ++b)
			merged[b] += o->hist[b];
	}
	if (getenv("CAPS_SCALE_COUNTS") != NULL)
		fprintf(stderr, "%s N=%d took %.1f s\n", kind_name[k], n,
		    (now_ns() - board->end) / 1e9 + seconds);
	if (!r.ok || total == 0) {
		r.ok = 0;
		return (r);
	}
	if (getenv("CAPS_SCALE_COUNTS") != NULL) {
		fprintf(stderr, "%s N=%d round trips per client:", kind_name[k], n);
		for (i = 0; i < n; ++i)
			fprintf(stderr, " %ld", board->c[i].count);
		fprintf(stderr, "\n");
	}
	r.rate = total / seconds;
	r.p50 = percentile(merged, total, 0.50);
	r.p99 = percentile(merged, total, 0.99);
	r.fair = (double)least / ((double)total / n);
	r.srv_cs = s0 >= 0 && s1 >= 0 ? (double)(s1 - s0) / total : -1;
	r.cli_cs = (double)ccsw / total;
	r.cli_us = ccpu / total;
	/* perf counted the warm-up too (and a little more). */
	r.srv_sc = sc >= 0 ? (double)sc / (total * (1 + warm / seconds)) : -1;
	r.cli_sc = csc >= 0 ? (double)csc / (total * (1 + warm / seconds)) : -1;
	if (c0 >= 0 && c1 >= 0) {
		double cpu_s = (double)(c1 - c0) / sysconf(_SC_CLK_TCK);

		r.cpu = cpu_s / seconds * 100;
		r.us_per_rt = cpu_s / total * 1e6;
	} else
		r.cpu = r.us_per_rt = -1;
	return (r);
}

/* ---- main ---- */

static void
raise_nofile(int need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		perror("getrlimit(RLIMIT_NOFILE)");
		return;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
			printf("RLIMIT_NOFILE: could not raise %llu to %llu (%s)\n",
			    (unsigned long long)was, (unsigned long long)rl.rlim_max,
			    strerror(errno));
			getrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	printf("RLIMIT_NOFILE: %llu (hard limit %llu)%s\n",
	    (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
	    rl.rlim_cur < (rlim_t)need ? ": too few for the largest row" : "");
}

static pid_t parent;

/* Is kind k in CAPS_SCALE_KINDS (all of them when it is not set)? */
static int
kind_wanted(int k)
{
	static const char *key[NKIND] = { "epoll", "v1", "v2" };
	const char *e = getenv("CAPS_SCALE_KINDS"), *p;
	size_t l = strlen(key[k]);

	if (e == NULL)
		return (1);
	for (p = e; (p = strstr(p, key[k])) != NULL; p += l)
		if ((p == e || p[-1] == ',') && (p[l] == '\0' || p[l] == ','))
			return (1);
	return (0);
}

/* Is N in CAPS_SCALE_NS (a list such as "8,128"; every N when not set)? */
static int
n_wanted(int n)
{
	const char *e = getenv("CAPS_SCALE_NS"), *p;
	char *end;

	if (e == NULL || *e == '\0')
		return (1);
	for (p = e; *p != '\0'; p = *end == ',' ? end + 1 : end) {
		long v = strtol(p, &end, 10);

		if (end == p)
			return (0);
		if (v == n)
			return (1);
	}
	return (0);
}

static void
cleanup(void)
{
	if (getpid() == parent && dir[0] != '\0')
		rm_tree(dir);
}

#define NN	8		/* the Ns of the table: 1, 2, 4, ... 128 */
#define MAXPASS	50

static const int ns[NN] = { 1, 2, 4, 8, 16, 32, 64, 128 };
/* Every pass's rows; res[p][i][k].ok is 0 for a row not run or failed. */
static struct rowres res[MAXPASS][NN][NKIND];

static void
print_header(const char *extra)
{
	printf("%4s %-8s %10s %8s %9s %9s %8s %5s %8s %7s %8s %6s %6s %6s %6s %6s%s\n", "N",
	    "server", "rt/s", "vs epoll", "p50 us", "p99 us", "p50 vs", "fair",
	    "srv cpu%", "us/rt", "rss KB", "srv cs", "srv sc", "cli cs", "cli sc", "cli us",
	    extra);
}

/* One row; vs, p50vs: its ratios to the epoll row (0: none). */
static void
print_row(int n, int k, const struct rowres *r, double vs, double p50vs)
{
	char sc[16] = "     -", csc[16] = "     -";

	if (r->srv_sc >= 0)
		snprintf(sc, sizeof(sc), "%6.2f", r->srv_sc);
	if (r->cli_sc >= 0)
		snprintf(csc, sizeof(csc), "%6.2f", r->cli_sc);
	printf("%4d %-8s %10.0f %7.2fx %9.1f %9.1f %7.2fx %5.2f %8.0f %7.2f %8ld"
	    " %6.2f %s %6.2f %s %6.2f",
	    n, kind_name[k], r->rate, vs, r->p50, r->p99, p50vs,
	    r->fair, r->cpu, r->us_per_rt, r->rss, r->srv_cs, sc, r->cli_cs, csc, r->cli_us);
}

/* Median, min and max of v[0..n) (n > 0; v is sorted). */
struct spread {
	double	med, min, max;
};

static struct spread
spread_of(double *v, int n)
{
	struct spread s;

	qsort(v, (size_t)n, sizeof(v[0]), cmpd);
	s.min = v[0];
	s.max = v[n - 1];
	s.med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	return (s);
}

/* The ratio of rows r to the epoll row b of the same pass, field at off. */
static double
ratio_to(const struct rowres *r, const struct rowres *b, size_t off)
{
	double x = *(const double *)(const void *)((const char *)r + off);
	double y = *(const double *)(const void *)((const char *)b + off);

	return (b->ok && y > 0 ? x / y : 0);
}

/* The median of field off (a double) of row (i, k) over the passes that
 * measured it; into *s its spread. The number of such passes. */
static int
median_field(int passes, int i, int k, size_t off, struct spread *s)
{
	double v[MAXPASS];
	int p, m = 0;

	for (p = 0; p < passes; ++p)
		if (res[p][i][k].ok)
			v[m++] = *(const double *)(const void *)((const char *)&res[p][i][k] + off);
	if (m > 0)
		*s = spread_of(v, m);
	return (m);
}

/* The median of every pass's rows, one line per N and kind. */
static void
print_medians(int passes)
{
	static const size_t fields[] = {
		offsetof(struct rowres, rate), offsetof(struct rowres, p50),
		offsetof(struct rowres, p99), offsetof(struct rowres, fair),
		offsetof(struct rowres, cpu), offsetof(struct rowres, us_per_rt),
		offsetof(struct rowres, srv_cs), offsetof(struct rowres, cli_cs),
		offsetof(struct rowres, srv_sc), offsetof(struct rowres, cli_sc),
		offsetof(struct rowres, cli_us),
	};
	int i, k, p, f;

	printf("median of %d passes (spread: (max - min) / median of rt/s)\n", passes);
	print_header("  spread");
	for (i = 0; i < NN; ++i)
		for (k = 0; k < NKIND; ++k) {
			struct rowres r = { 0 };
			struct spread s, rate = { 0 };
			double vs[MAXPASS], p50vs[MAXPASS], rss[MAXPASS];
			int m = 0;

			for (f = 0; f < (int)(sizeof(fields) / sizeof(fields[0])); ++f)
				if (median_field(passes, i, k, fields[f], &s) > 0) {
					*(double *)(void *)((char *)&r + fields[f]) = s.med;
					if (fields[f] == offsetof(struct rowres, rate))
						rate = s;
				}
			for (p = 0; p < passes; ++p) {
				const struct rowres *x = &res[p][i][k], *b = &res[p][i][EPOLL];

				if (!x->ok)
					continue;
				vs[m] = ratio_to(x, b, offsetof(struct rowres, rate));
				p50vs[m] = ratio_to(x, b, offsetof(struct rowres, p50));
				rss[m++] = (double)x->rss;
			}
			if (m == 0)
				continue;
			r.rss = (long)spread_of(rss, m).med;
			print_row(ns[i], k, &r, spread_of(vs, m).med, spread_of(p50vs, m).med);
			printf("  %5.0f%%%s\n", rate.med > 0 ? (rate.max - rate.min) / rate.med * 100 : 0,
			    m < passes ? " (some failed)" : "");
		}
}

/*
 * A confidence interval of the median of v[0..n) (sorted), free of any
 * assumption on the distribution: [v[j], v[n-1-j]] with the largest j
 * for which at most 2.5% of the binomial(n, 1/2) lies below j on either
 * side (the median lies outside with a chance of at most 5%). Needs 6
 * or more values; with fewer, the whole range (and *level 0).
 */
static void
median_ci(const double *v, int n, double *lo, double *hi, double *level)
{
	double tail = 0, c = 1;
	int j = 0, i;

	/* tail = P(X <= j) for X ~ binomial(n, 1/2), built up term by term. */
	for (i = 0; i < n; ++i)
		c /= 2;
	tail = c;		/* P(X = 0) */
	while (j + 1 < n / 2) {
		double next = c * (n - j) / (j + 1);

		if (tail + next > 0.025)
			break;
		c = next;
		tail += c;
		++j;
	}
	if (tail > 0.025) {
		*lo = v[0];
		*hi = v[n - 1];
		*level = 0;
		return;
	}
	*lo = v[j];
	*hi = v[n - 1 - j];
	*level = 1 - 2 * tail;
}

/* "median [lo-hi]" of v[0..n) into buf: the interval of median_ci. */
static const char *
med_ci_str(double *v, int n, char *buf, size_t len)
{
	double lo, hi, level;
	struct spread s = spread_of(v, n);

	median_ci(v, n, &lo, &hi, &level);
	if (level > 0)
		snprintf(buf, len, "%5.2f [%4.2f-%4.2f]", s.med, lo, hi);
	else
		snprintf(buf, len, "%5.2f (%4.2f-%4.2f)", s.med, lo, hi);
	return (buf);
}

/*
 * For every kind: row hi against row lo (indices into ns), per pass.
 * Then, for every kind but epoll, the same ratios divided by the epoll
 * server's of the same pass ("ratio of ratios"): how much worse (< 1
 * for rt/s, > 1 for p50) the kind scales than the baseline under the
 * same machine, which the interleaving of the rows gives both.
 */
static void
print_scaling(int passes, int lo, int hi)
{
	static const size_t fields[] = {
		offsetof(struct rowres, rate), offsetof(struct rowres, p50),
		offsetof(struct rowres, p99), offsetof(struct rowres, us_per_rt),
		offsetof(struct rowres, cli_us),
	};
	enum { NF = sizeof(fields) / sizeof(fields[0]) };
	static double v[NKIND][NF][MAXPASS];
	static int ok[NKIND][MAXPASS];
	double nratio = (double)ns[hi] / ns[lo];
	char buf[64];
	int k, p, f, m, any95 = 0;

	for (k = 0; k < NKIND; ++k)
		for (p = 0; p < passes; ++p) {
			const struct rowres *a = &res[p][lo][k], *b = &res[p][hi][k];

			ok[k][p] = a->ok && b->ok;
			for (f = 0; ok[k][p] && f < NF; ++f)
				v[k][f][p] = ratio_to(b, a, fields[f]);
			if (ok[k][p]) {
				v[k][1][p] /= nratio;
				v[k][2][p] /= nratio;
			}
		}
	printf("N=%d against N=%d, per pass: median [95%% interval of the median] "
	    "(or (min-max) under 6 passes)\n"
	    "%-8s %5s %20s %20s %20s %20s %20s\n", ns[hi], ns[lo], "server", "passes",
	    "rt/s ratio", "p50 ratio / N ratio", "p99 ratio / N ratio", "srv us/rt ratio",
	    "cli us/rt ratio");
	for (k = 0; k < NKIND; ++k) {
		double w[MAXPASS];

		for (p = m = 0; p < passes; ++p)
			m += ok[k][p];
		if (m == 0)
			continue;
		printf("%-8s %5d", kind_name[k], m);
		for (f = 0; f < NF; ++f) {
			for (p = m = 0; p < passes; ++p)
				if (ok[k][p])
					w[m++] = v[k][f][p];
			printf(" %20s", med_ci_str(w, m, buf, sizeof(buf)));
		}
		printf("\n");
	}
	for (k = 0; k < NKIND; ++k) {
		double w[MAXPASS];

		if (k == EPOLL)
			continue;
		for (p = m = 0; p < passes; ++p)
			m += ok[k][p] && ok[EPOLL][p];
		if (m == 0)
			continue;
		if (!any95++)
			printf("the same, over the epoll server's of the same pass:\n");
		printf("%-8s %5d", kind_name[k], m);
		for (f = 0; f < NF; ++f) {
			for (p = m = 0; p < passes; ++p)
				if (ok[k][p] && ok[EPOLL][p] && v[EPOLL][f][p] > 0)
					w[m++] = v[k][f][p] / v[EPOLL][f][p];
			printf(" %20s", m > 0 ? med_ci_str(w, m, buf, sizeof(buf)) : "-");
		}
		printf("\n");
	}
	/*
	 * The verdict on rt/s, the "does not fall (within noise)",
	 * for a fall of 10%: the kind's own ratio, and its ratio over the
	 * epoll server's.
	 */
	for (k = 0; k < NKIND; ++k)
		for (int rel = 0; rel < 2; ++rel) {
			double w[MAXPASS], l, h, level;

			if (rel && k == EPOLL)
				continue;
			for (p = m = 0; p < passes; ++p)
				if (ok[k][p] && (!rel || (ok[EPOLL][p] && v[EPOLL][0][p] > 0)))
					w[m++] = rel ? v[k][0][p] / v[EPOLL][0][p] : v[k][0][p];
			if (m == 0)
				continue;
			qsort(w, (size_t)m, sizeof(w[0]), cmpd);
			median_ci(w, m, &l, &h, &level);
			printf("verdict %-8s rt/s N=%d/N=%d%s: ", kind_name[k], ns[hi], ns[lo],
			    rel ? " over epoll's" : "");
			if (level == 0)
				printf("undecided (fewer than 6 passes)\n");
			else if (l >= 0.90)
				printf("does not fall by 10%% (%.0f%% interval %.2f-%.2f)\n",
				    level * 100, l, h);
			else if (h < 0.90)
				printf("falls by more than 10%% (%.0f%% interval %.2f-%.2f)\n",
				    level * 100, l, h);
			else
				printf("undecided: interval %.2f-%.2f straddles 0.90 (more passes)\n",
				    l, h);
		}
}

#include "caps_scale_slice.h"

int
main(int ac, char **av)
{
	int maxn = MAXCLIENTS, minn = 1, passes = 1, lo = -1, hi = -1, i, k, p;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	if (ac > 1)
		seconds = strtod(av[1], NULL);
	if (ac > 2)
		maxn = atoi(av[2]);
	if (ac > 3)
		minn = atoi(av[3]);
	if (ac > 4)
		passes = atoi(av[4]);
	if (seconds < 0.05 || seconds > 60 || maxn < 1 || maxn > MAXCLIENTS ||
	    passes < 1 || passes > MAXPASS) {
		fprintf(stderr, "usage: caps_scale [SECONDS (0.05..60) [MAXCLIENTS (1..%d) "
		    "[MINCLIENTS [PASSES (1..%d)]]]]\n",
		    MAXCLIENTS, MAXPASS);
		return (1);
	}
	board = mmap(NULL, sizeof(*board), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (board == MAP_FAILED)
		die("mmap");
	snprintf(dir, sizeof(dir), "/tmp/caps-scale.XXXXXX");
	if (mkdtemp(dir) == NULL)
		die("mkdtemp");
	setenv("LIBCAPS_DIR", dir, 1);
	parent = getpid();
	atexit(cleanup);
	signal(SIGPIPE, SIG_IGN);

	if (getenv("CAPS_SCALE_SLICE") != NULL) {
		int ms = atoi(getenv("CAPS_SCALE_SLICE"));

		if (ms < 10 || ms > 10000 || minn < 1 || minn > maxn) {
			fprintf(stderr, "caps_scale: CAPS_SCALE_SLICE=MS (10..10000) with "
			    "1 <= MINCLIENTS <= MAXCLIENTS\n");
			return (1);
		}
		raise_nofile(2 * maxn + 64);
		return (run_slices(minn, maxn, passes, ms));
	}
	raise_nofile(2 * maxn + 64);
	printf("N clients, one round trip outstanding each, %d-byte payload; "
	    "%.2f s measured per row; %ld cpus online; %s\n", PAYLOAD, seconds, ncpu,
	    getenv("LIBCAPS_SHM") != NULL && strcmp(getenv("LIBCAPS_SHM"), "0") == 0 ?
	    "LIBCAPS_SHM=0" : "shared memory as the library decides");
	if (getenv("CAPS_SCALE_SCHED") != NULL && *getenv("CAPS_SCALE_SCHED") != '\0')
		printf("CAPS_SCALE_SCHED=%s\n", getenv("CAPS_SCALE_SCHED"));
	for (i = 0; i < NN && ns[i] <= maxn; ++i)
		if (ns[i] >= minn && n_wanted(ns[i])) {
			if (lo < 0)
				lo = i;
			hi = i;
		}
	for (p = 0; p < passes; ++p) {
		/*
		 * Every other pass runs the Ns from the largest down and the
		 * kinds at each N in the reverse order: a machine whose load
		 * drifts during a pass favours neither end nor either kind
		 * over an even number of passes.
		 */
		int rev = p % 2;

		if (passes > 1)
			printf("pass %d of %d%s\n", p + 1, passes,
			    rev ? " (largest N first, kinds in reverse)" : "");
		print_header("");
		for (int j = 0; lo >= 0 && j <= hi - lo; ++j) {
			i = rev ? hi - j : lo + j;
			if (!n_wanted(ns[i]))
				continue;
			for (int kk = 0; kk < NKIND; ++kk) {
				k = rev ? NKIND - 1 - kk : kk;
				if (kind_wanted(k))
					res[p][i][k] = run_row(k, ns[i]);
			}
			/* Printed once the epoll row of this N has run. */
			for (k = 0; k < NKIND; ++k) {
				struct rowres *r = &res[p][i][k], *base = &res[p][i][EPOLL];

				if (!kind_wanted(k))
					continue;
				if (!r->ok) {
					printf("%4d %-8s   failed\n", ns[i], kind_name[k]);
					continue;
				}
				print_row(ns[i], k, r, ratio_to(r, base, offsetof(struct rowres, rate)),
				    ratio_to(r, base, offsetof(struct rowres, p50)));
				printf("\n");
			}
			fflush(stdout);
		}
	}
	if (passes > 1 && lo >= 0) {
		print_medians(passes);
		if (hi > lo)
			print_scaling(passes, lo, hi);
	}
	return (0);	/* cleanup() removes the directory */
}
