/*
 * caps_scale's interleaved mode (CAPS_SCALE_SLICE=MS; included by
 * caps_scale.c after its statistics):
 *
 *	CAPS_SCALE_SLICE=MS caps_scale SECONDS MAXCLIENTS MINCLIENTS ROUNDS
 *
 * A set is one kind's server with N clients of its own; a set for every
 * wanted kind (CAPS_SCALE_KINDS) and every N of the table from
 * MINCLIENTS to MAXCLIENTS (those in CAPS_SCALE_NS) runs at once, all
 * connected, and the sets take turns in slices of MS ms: one set does
 * round trips while every other client sleeps on a futex (its server
 * then sleeps in epoll_wait). A round gives every set one slice, the
 * kinds of one N back to back, in an order that reverses every other
 * round; ROUNDS rounds (SECONDS is not used). The slices of one round
 * lie within a second or so of each other: the machine's load, which
 * drifts over seconds when other work shares it, is much the same for
 * all of them, so each round's ratios (v1 against epoll at one N, then
 * that at the largest N against at the smallest) compare like with
 * like. The first SETTLE_MS of a slice are not counted (the set's
 * clients and server waking, the last round trips of the set before).
 * The table: each set's round trips per second over its slices, that
 * over the epoll set's of the same N, p50 and p99 of all of them, "fair"
 * (the fewest round trips one client made over the mean), and the
 * server's and the clients' cpu per round trip (the server's from
 * schedstat, exact). Then, per kind, each round's ratios of the largest
 * N to the smallest (rt/s; p50 and p99 over the ratio of the Ns; cpu
 * per round trip; for v1 and v2 the rt/s ratio over epoll's) as the
 * median with a 95% interval of the median, and verdicts with a margin
 * of 10%: rt/s "does not fall" when the interval lies above 0.90, p50
 * and p99 "grow no faster than N" when it lies below 1.10 (the
 * opposite verdicts when it lies wholly on the other side, else
 * undecided).
 */
#ifndef CAPS_SCALE_SLICE_H
#define CAPS_SCALE_SLICE_H

#include <linux/futex.h>
#include <sys/syscall.h>

#define MAXSETS		(NN * NKIND)
#define MAXROUNDS	MAXPASS
#define SETTLE_MS	20

struct sclient {
	long		count[MAXROUNDS];	/* round trips counted, per round */
	double		cpu_us[MAXROUNDS];	/* its cpu time in them */
	int		failed;
};

/* Shared by the parent and every client (MAP_SHARED). */
struct sboard {
	int		seq;		/* futex word: bumped at every slice */
	int		set;		/* the set whose slice it is */
	int		round;
	int		stop;
	int		ready;
	unsigned	alarm_s;	/* a client's watchdog */
	double		start, end;	/* the counted part of the slice */
	struct sclient	c[MAXSETS * MAXCLIENTS];
	/* Latencies per set and round, every client's added at the end of
	 * each of its slices. */
	uint64_t	hist[MAXSETS][MAXROUNDS][NBUCKET];
};

static struct sboard *sb;

static void
futex_wait(int *w, int v)
{
	syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void
futex_wake_all(int *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
}

/* Cpu time (us) of this process, all its threads. */
static double
own_cpu_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (ts.tv_sec * 1e6 + ts.tv_nsec / 1e3);
}

/* Client me of set `set` (kind k): connect, then do round trips in the
 * set's slices until told to stop. */
static void
slice_client(enum kind k, int set, int me)
{
	static uint64_t h[NBUCKET];	/* this slice's latencies */
	struct sclient *out = &sb->c[me];
	uint64_t seq = (uint64_t)me << 40;
	struct conn c;
	int done = -1;

	alarm(sb->alarm_s);	/* a lost reply fails the run, not hangs it */
	sched_as(0);
	if (connect_to(k, &c) != 0) {
		out->failed = 1;
		_exit(1);
	}
	__atomic_add_fetch(&sb->ready, 1, __ATOMIC_SEQ_CST);
	for (;;) {
		int q = __atomic_load_n(&sb->seq, __ATOMIC_ACQUIRE);
		double t0, t1, cpu0 = -1, start, end;
		int r;

		if (sb->stop)
			_exit(0);
		if (sb->set != set || q == done) {
			futex_wait(&sb->seq, q);
			continue;
		}
		done = q;
		r = sb->round;
		start = sb->start;
		end = sb->end;
		while ((t0 = now_ns()) < end &&
		    __atomic_load_n(&sb->seq, __ATOMIC_RELAXED) == q) {
			if (cpu0 < 0 && t0 >= start)
				cpu0 = own_cpu_us();
			if (round_trip(k, &c, seq++) != 0) {
				out->failed = 1;
				_exit(1);
			}
			t1 = now_ns();
			if (t0 >= start && t1 <= end) {
				++h[bucket((uint64_t)(t1 - t0))];
				++out->count[r];
			}
		}
		if (cpu0 >= 0)
			out->cpu_us[r] += own_cpu_us() - cpu0;
		for (int b = 0; b < NBUCKET; ++b)
			if (h[b] != 0) {
				__atomic_add_fetch(&sb->hist[set][r][b], h[b], __ATOMIC_RELAXED);
				h[b] = 0;
			}
	}
}

struct sset {
	enum kind	k;
	int		n;		/* its clients */
	int		first;		/* index of its first client in sb->c */
	pid_t		spid;
	double		srv_ns[MAXROUNDS];
};

/* A set's round trips per second in round r (0 if it failed). */
static double
set_rate(const struct sset *s, int r, double slice_s)
{
	long total = 0;
	int i;

	for (i = 0; i < s->n; ++i)
		total += sb->c[s->first + i].count[r];
	return (total / slice_s);
}

/* The cpu (us) per round trip of set s in round r, server and clients. */
static double
set_cpu(const struct sset *s, int r, double slice_s)
{
	double cli = 0, rate = set_rate(s, r, slice_s);
	int i;

	for (i = 0; i < s->n; ++i)
		cli += sb->c[s->first + i].cpu_us[r];
	return (rate > 0 ? (s->srv_ns[r] / 1e3 + cli) / (rate * slice_s) : 0);
}

/* Percentile q (us) of set j's latencies in round r (r < 0: every round). */
static double
set_pct(int j, int r, int rounds, double q)
{
	static uint64_t merged[NBUCKET];
	uint64_t total = 0;
	int b, i;

	memset(merged, 0, sizeof(merged));
	for (i = r < 0 ? 0 : r; i < (r < 0 ? rounds : r + 1); ++i)
		for (b = 0; b < NBUCKET; ++b) {
			merged[b] += sb->hist[j][i][b];
			total += sb->hist[j][i][b];
		}
	return (total > 0 ? percentile(merged, total, q) : 0);
}

/*
 * Print "label  median [interval]" of v[0..m) and a verdict with a
 * margin of 10%: for rt/s ratios (verdict 1) on a fall (the interval
 * above 0.90: it does not fall by 10%); for latency ratios already
 * divided by the ratio of the Ns (verdict 2) on growing faster than N
 * (the interval below 1.10: it grows no faster, within 10%).
 */
static void
print_ratio(const char *label, double *v, int m, int verdict)
{
	double lo, hi, level;
	char buf[64];

	printf("  %-44s %s", label, med_ci_str(v, m, buf, sizeof(buf)));
	median_ci(v, m, &lo, &hi, &level);
	if (!verdict)
		printf("\n");
	else if (level == 0)
		printf("  undecided (fewer than 6 rounds)\n");
	else if (verdict == 1)
		printf("  %s\n", lo >= 0.90 ? "does not fall by 10%" : hi < 0.90 ?
		    "falls by more than 10%" : "undecided (the interval straddles 0.90)");
	else
		printf("  %s\n", hi <= 1.10 ? "grows no faster than N (10%)" : lo > 1.10 ?
		    "grows faster than N, by more than 10%" :
		    "undecided (the interval straddles 1.10)");
}

/* Round trips of the epoll set with n clients over every round. */
static double
ep_total(const struct sset *sets, int nsets, int n, int rounds)
{
	long total = 0;
	int j, i, r;

	for (j = 0; j < nsets; ++j)
		if (sets[j].k == EPOLL && sets[j].n == n)
			for (i = 0; i < n; ++i)
				for (r = 0; r < rounds; ++r)
					total += sb->c[sets[j].first + i].count[r];
	return ((double)total);
}

/* The set of kind k with n clients, or NULL. */
static const struct sset *
find_set(const struct sset *sets, int nsets, int k, int n)
{
	int j;

	for (j = 0; j < nsets; ++j)
		if (sets[j].k == (enum kind)k && sets[j].n == n)
			return (&sets[j]);
	return (NULL);
}

/* The interleaved run: the table's Ns from lo to hi (those in
 * CAPS_SCALE_NS), every wanted kind, `rounds` rounds of one slice of
 * slice_ms per set. */
static int
run_slices(int lo, int hi, int rounds, int slice_ms)
{
	static struct sset sets[MAXSETS];
	static pid_t cpid[MAXSETS * MAXCLIENTS];
	double slice_s = slice_ms / 1e3, deadline;
	int nsets = 0, nclients = 0, i, j, r, k, bad = 0;

	sb = mmap(NULL, sizeof(*sb), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	    -1, 0);
	if (sb == MAP_FAILED)
		die("mmap");
	sb->set = -1;
	sb->alarm_s = (unsigned)(rounds * MAXSETS * (slice_ms + SETTLE_MS) / 1000 + 120);
	for (j = 0; j < NN; ++j)
		for (k = 0; k < NKIND; ++k) {
			struct sset *s = &sets[nsets];

			if (!kind_wanted(k) || ns[j] < lo || ns[j] > hi || !n_wanted(ns[j]))
				continue;
			s->k = (enum kind)k;
			s->n = ns[j];
			s->first = nclients;
			++row;
			s->spid = k == EPOLL ? epoll_server() : k == V1 ? v1_server() : v2_server();
			for (i = 0; i < s->n; ++i) {
				cpid[nclients] = xfork();
				if (cpid[nclients] == 0)
					slice_client(s->k, nsets, nclients);
				++nclients;
			}
			++nsets;
		}
	deadline = now_ns() + 60e9;
	while (__atomic_load_n(&sb->ready, __ATOMIC_SEQ_CST) < nclients && now_ns() < deadline)
		usleep(1000);
	if (sb->ready < nclients) {
		printf("only %d of %d clients connected\n", sb->ready, nclients);
		bad = 1;
	}
	printf("interleaved: %d sets (kinds x N from %d to %d), %d rounds of one %d ms slice "
	    "each (the first %d ms not counted); order reversed every other round\n",
	    nsets, lo, hi, rounds, slice_ms + SETTLE_MS, SETTLE_MS);
	/* The library's quiet sweep (1 s) gives a quiet connection's rings
	 * back: a set idle that long wakes them at each of its slices. */
	if ((nsets - 1) * (slice_ms + SETTLE_MS) >= 1000)
		printf("note: a set waits %d ms between its slices, long enough for CAPS "
		    "rings to go dormant meanwhile (fewer sets or shorter slices avoid it)\n",
		    (nsets - 1) * (slice_ms + SETTLE_MS));
	for (r = 0; r < rounds && !bad; ++r)
		for (j = 0; j < nsets; ++j) {
			struct sset *s = &sets[r % 2 ? nsets - 1 - j : j];
			long long c0, c1;

			sb->set = (int)(s - sets);
			sb->round = r;
			sb->start = now_ns() + SETTLE_MS * 1e6;
			sb->end = sb->start + slice_s * 1e9;
			__atomic_add_fetch(&sb->seq, 1, __ATOMIC_RELEASE);
			futex_wake_all(&sb->seq);
			sleep_until(sb->start);
			c0 = sched_ns(s->spid);
			sleep_until(sb->end);
			c1 = sched_ns(s->spid);
			s->srv_ns[r] = c0 >= 0 && c1 >= c0 ? (double)(c1 - c0) : 0;
		}
	sb->set = -1;
	sb->stop = 1;
	__atomic_add_fetch(&sb->seq, 1, __ATOMIC_RELEASE);
	futex_wake_all(&sb->seq);
	for (i = 0; i < nclients; ++i) {
		if (bad)
			kill(cpid[i], SIGKILL);
		if (!reap(cpid[i]) || sb->c[i].failed)
			bad = 1;
	}
	for (j = 0; j < nsets; ++j) {
		kill(sets[j].spid, SIGTERM);
		reap(sets[j].spid);
	}
	if (bad) {
		printf("a client failed: no results\n");
		return (1);
	}
	printf("%4s %-8s %10s %8s %9s %9s %5s %9s %9s\n", "N", "server", "rt/s", "vs epoll",
	    "p50 us", "p99 us", "fair", "srv us/rt", "cli us/rt");
	for (j = 0; j < nsets; ++j) {
		struct sset *s = &sets[j];
		double srv = 0, cli = 0, ep = ep_total(sets, nsets, s->n, rounds);
		long total = 0, least = -1;

		for (i = 0; i < s->n; ++i) {
			struct sclient *o = &sb->c[s->first + i];
			long mine = 0;

			for (r = 0; r < rounds; ++r) {
				mine += o->count[r];
				cli += o->cpu_us[r];
			}
			total += mine;
			if (least < 0 || mine < least)
				least = mine;
		}
		for (r = 0; r < rounds; ++r)
			srv += s->srv_ns[r] / 1e3;
		if (total == 0)
			continue;
		printf("%4d %-8s %10.0f %7.2fx %9.1f %9.1f %5.2f %9.2f %9.2f\n", s->n,
		    kind_name[s->k], total / (rounds * slice_s), ep > 0 ? total / ep : 0,
		    set_pct(j, -1, rounds, 0.50),
		    set_pct(j, -1, rounds, 0.99), (double)least / ((double)total / s->n),
		    srv / total, cli / total);
	}
	lo = sets[0].n;
	hi = sets[nsets - 1].n;
	if (hi == lo)
		return (0);
	printf("per round, N=%d against N=%d: median [95%% interval of the median] "
	    "(or (min-max) under 6 rounds)\n", hi, lo);
	for (k = 0; k < NKIND; ++k) {
		const struct sset *a = find_set(sets, nsets, k, lo), *b = find_set(sets, nsets, k, hi);
		const struct sset *ea = find_set(sets, nsets, EPOLL, lo);
		const struct sset *eb = find_set(sets, nsets, EPOLL, hi);
		double v[MAXROUNDS], w[MAXROUNDS], x[MAXROUNDS], p50[MAXROUNDS], p99[MAXROUNDS];
		char label[80];
		int m = 0;

		if (a == NULL || b == NULL)
			continue;
		for (r = 0; r < rounds; ++r) {
			double ra = set_rate(a, r, slice_s), rb = set_rate(b, r, slice_s);
			double ca = set_cpu(a, r, slice_s), cb = set_cpu(b, r, slice_s);

			if (ra <= 0 || rb <= 0 || ca <= 0)
				continue;
			x[m] = 0;
			if (k != EPOLL && ea != NULL && eb != NULL) {
				double ea_r = set_rate(ea, r, slice_s), eb_r = set_rate(eb, r, slice_s);

				if (ea_r <= 0 || eb_r <= 0)
					continue;
				x[m] = (rb / eb_r) / (ra / ea_r);
			}
			v[m] = rb / ra;
			w[m] = cb / ca;
			p50[m] = set_pct((int)(b - sets), r, rounds, 0.50) /
			    set_pct((int)(a - sets), r, rounds, 0.50) / ((double)hi / lo);
			p99[m] = set_pct((int)(b - sets), r, rounds, 0.99) /
			    set_pct((int)(a - sets), r, rounds, 0.99) / ((double)hi / lo);
			++m;
		}
		if (m == 0)
			continue;
		printf("%s (%d rounds)\n", kind_name[k], m);
		snprintf(label, sizeof(label), "rt/s N=%d / rt/s N=%d", hi, lo);
		print_ratio(label, v, m, 1);
		snprintf(label, sizeof(label), "p50 N=%d / p50 N=%d / %d", hi, lo, hi / lo);
		print_ratio(label, p50, m, 2);
		snprintf(label, sizeof(label), "p99 N=%d / p99 N=%d / %d", hi, lo, hi / lo);
		print_ratio(label, p99, m, 2);
		snprintf(label, sizeof(label), "cpu per round trip, N=%d / N=%d", hi, lo);
		print_ratio(label, w, m, 0);
		if (k != EPOLL && ea != NULL && eb != NULL) {
			snprintf(label, sizeof(label), "that rt/s ratio over epoll's");
			print_ratio(label, x, m, 1);
		}
	}
	return (0);
}

#endif /* CAPS_SCALE_SLICE_H */
