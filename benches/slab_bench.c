/*
 * slab_bench -- the libcaps slab allocator against glibc malloc and
 * mimalloc, in one run on the same machine:
 *
 *   pair    slab_malloc + slab_free of one block, repeated (hot path)
 *   batch   1000 allocations, then 1000 frees in the same order; per pair
 *   xthread one thread allocates, another frees, both running at once
 *           through a ring of 4096 slots; time per block of the whole
 *           pipeline (allocation, hand-over, remote free, and the owner
 *           taking freed blocks back)
 *   xfree   the cost of one remote free: a thread allocates 1000 blocks
 *           and hands them over; another thread frees them, timing only
 *           its free loop; per free (the owner taking them back is in
 *           its next round of allocations, not timed: see xthread)
 *   shared  two threads at once each doing pair on the same malloc_type
 *           (its own type for the slab, so the other tests keep one
 *           allocating cpu per type); time per pair, wall clock
 *   rss     resident memory after allocating 256 MiB in 1 KiB blocks and
 *           freeing them all (each allocator in its own forked child)
 *
 * Each figure is the median of REPS repetitions; the allocators take
 * turns within each repetition, so a burst of load from other processes
 * hits all three alike.
 *
 * Usage: slab_bench [scale [reps]]  (scale 1 = default, smaller = shorter;
 * reps 5 by default). Prints a table and each slab figure's ratio to glibc
 * and mimalloc.
 */
#define _GNU_SOURCE
#include <libcaps/slaballoc.h>
#include <mimalloc.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

MALLOC_DEFINE(M_BENCH, "bench", "benchmark blocks");
MALLOC_DEFINE(M_SHARED, "shared", "blocks of two threads at once");

enum { A_SLAB, A_GLIBC, A_MI, NALLOC };
static const char *const names[NALLOC] = { "libcaps slab", "glibc", "mimalloc" };

static inline void *
xalloc(int a, size_t n)
{
	switch (a) {
	case A_SLAB: return slab_malloc(n, M_BENCH, M_WAITOK);
	case A_GLIBC: return malloc(n);
	default: return mi_malloc(n);
	}
}

static inline void
xfree(int a, void *p)
{
	switch (a) {
	case A_SLAB: slab_free(p, M_BENCH); break;
	case A_GLIBC: free(p); break;
	default: mi_free(p); break;
	}
}

static double
now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static void *volatile sink;

static double
bench_pair(int a, size_t sz, long n)
{
	for (long i = 0; i < n / 10; i++) {
		void *p = xalloc(a, sz);
		sink = p;
		xfree(a, p);
	}
	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		void *p = xalloc(a, sz);
		sink = p;
		xfree(a, p);
	}
	return (now_ns() - t0) / n;
}

static double
bench_batch(int a, size_t sz, long rounds)
{
	static void *objs[1000];
	double t0 = 0;
	for (long r = -rounds / 10 - 1; r < rounds; r++) {
		if (r == 0)
			t0 = now_ns();
		for (int j = 0; j < 1000; j++)
			objs[j] = xalloc(a, sz);
		for (int j = 0; j < 1000; j++)
			xfree(a, objs[j]);
	}
	return (now_ns() - t0) / (rounds * 1000.0);
}

#define RING 4096
static void *ring[RING];
static atomic_long rhead, rtail;
static long xn;
static int xa;

/* Spin a while, then let the other thread run: on a machine with more
 * busy threads than cores, pure spinning measures the scheduler. */
static inline void
relax(int *n)
{
	if (++*n > 256) {
		sched_yield();
		*n = 0;
	}
}

static void *
consumer(void *arg)
{
	(void)arg;
	for (long i = 0; i < xn; i++) {
		int n = 0;
		while (atomic_load_explicit(&rtail, memory_order_acquire) ==
		    atomic_load_explicit(&rhead, memory_order_relaxed))
			relax(&n);
		long h = atomic_load_explicit(&rhead, memory_order_relaxed);
		xfree(xa, ring[h % RING]);
		atomic_store_explicit(&rhead, h + 1, memory_order_release);
	}
	return NULL;
}

static double
bench_xthr(int a, size_t sz, long n)
{
	pthread_t th;
	xn = n;
	xa = a;
	atomic_store(&rhead, 0);
	atomic_store(&rtail, 0);
	pthread_create(&th, NULL, consumer, NULL);
	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		long tl = atomic_load_explicit(&rtail, memory_order_relaxed);
		int w = 0;
		while (tl - atomic_load_explicit(&rhead, memory_order_acquire) >= RING)
			relax(&w);
		ring[tl % RING] = xalloc(a, sz);
		atomic_store_explicit(&rtail, tl + 1, memory_order_release);
	}
	pthread_join(th, NULL);
	return (now_ns() - t0) / n;
}

/* shared: both threads run pair loops on one type. */
static size_t sh_sz;
static long sh_n;

static void
sh_loop(int a)
{
	for (long i = 0; i < sh_n; i++) {
		void *p = a == A_SLAB ? slab_malloc(sh_sz, M_SHARED, M_WAITOK) : xalloc(a, sh_sz);
		sink = p;
		if (a == A_SLAB)
			slab_free(p, M_SHARED);
		else
			xfree(a, p);
	}
}

static void *
sh_thread(void *arg)
{
	sh_loop(*(int *)arg);
	return NULL;
}

static double
bench_shared(int a, size_t sz, long n)
{
	pthread_t th;
	sh_sz = sz;
	sh_n = n;
	double t0 = now_ns();
	pthread_create(&th, NULL, sh_thread, &a);
	sh_loop(a);
	pthread_join(th, NULL);
	return (now_ns() - t0) / n;
}

/* xfree: hand-over of batches of XF blocks, timed on the freeing side. */
#define XF 1000
static void *xf_blk[XF];
static atomic_int xf_turn; /* 0: producer fills, 1: consumer frees, 2: stop */
static double xf_ns;

static void
xf_wait(int want)
{
	while (atomic_load_explicit(&xf_turn, memory_order_acquire) != want)
		sched_yield();
}

static void *
xf_consumer(void *arg)
{
	(void)arg;
	for (;;) {
		int t;
		while ((t = atomic_load_explicit(&xf_turn, memory_order_acquire)) == 0)
			sched_yield();
		if (t == 2)
			return NULL;
		double t0 = now_ns();
		for (int j = 0; j < XF; j++)
			xfree(xa, xf_blk[j]);
		xf_ns += now_ns() - t0;
		atomic_store_explicit(&xf_turn, 0, memory_order_release);
	}
}

static double
bench_xfree(int a, size_t sz, long rounds)
{
	pthread_t th;
	xa = a;
	xf_ns = 0;
	atomic_store(&xf_turn, 0);
	pthread_create(&th, NULL, xf_consumer, NULL);
	for (long r = 0; r < rounds; r++) {
		xf_wait(0);
		for (int j = 0; j < XF; j++)
			xf_blk[j] = xalloc(a, sz);
		atomic_store_explicit(&xf_turn, 1, memory_order_release);
	}
	xf_wait(0);
	atomic_store_explicit(&xf_turn, 2, memory_order_release);
	pthread_join(th, NULL);
	return xf_ns / (rounds * (double)XF);
}

static long
rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char l[256];
	long v = 0;
	while (fgets(l, sizeof l, f))
		if (strncmp(l, "VmRSS:", 6) == 0)
			v = atol(l + 6);
	fclose(f);
	return v;
}

/* In a child: RSS at peak and after freeing 256 MiB of 1 KiB blocks, in
 * KiB above the start; sent back through a pipe. */
#define RSS_N (256 * 1024)
static void *rss_v[RSS_N];

static void
bench_rss(int a, long out[2])
{
	int fd[2];
	if (pipe(fd) != 0)
		exit(1);
	pid_t pid = fork();
	if (pid == 0) {
		long r[2];
		memset(rss_v, 0, sizeof rss_v);
		void *warm = xalloc(a, 1024);
		xfree(a, warm);
		long r0 = rss_kb();
		for (long i = 0; i < RSS_N; i++) {
			rss_v[i] = xalloc(a, 1024);
			memset(rss_v[i], 1, 1024);
		}
		r[0] = rss_kb() - r0;
		for (long i = 0; i < RSS_N; i++)
			xfree(a, rss_v[i]);
		r[1] = rss_kb() - r0;
		if (write(fd[1], r, sizeof r) != sizeof r)
			_exit(1);
		_exit(0);
	}
	close(fd[1]);
	if (read(fd[0], out, 2 * sizeof(long)) != 2 * sizeof(long))
		out[0] = out[1] = -1;
	close(fd[0]);
	waitpid(pid, NULL, 0);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double
median(double *v, int n)
{
	qsort(v, n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define NSIZES 4
#define NTESTS 5
#define MAXREPS 99

int
main(int argc, char **argv)
{
	double scale = argc > 1 ? atof(argv[1]) : 1.0;
	int reps = argc > 2 ? atoi(argv[2]) : 5;
	if (reps < 1 || reps > MAXREPS)
		reps = 5;
	long npair = (long)(5e6 * scale / reps), nbatch = (long)(2000 * scale / reps);
	long nx = (long)(1e6 * scale / reps), nxf = (long)(1000 * scale / reps);
	if (npair < 1000)
		npair = 1000;
	if (nbatch < 2)
		nbatch = 2;
	if (nx < 1000)
		nx = 1000;
	if (nxf < 2)
		nxf = 2;
	static const size_t sizes[NSIZES] = { 16, 64, 256, 1024 };
	static const char *const tests[NTESTS] = { "pair", "batch", "xthread", "xfree", "shared" };
	static double runs[NSIZES][NTESTS][NALLOC][MAXREPS];
	double res[NSIZES][NTESTS][NALLOC];
	long rss[NALLOC][2];

	slab_init();
	/* RSS first, in fresh children, before this process warms anything. */
	for (int a = 0; a < NALLOC; a++)
		bench_rss(a, rss[a]);
	for (int k = 0; k < NSIZES; k++)
		for (int r = 0; r < reps; r++)
			for (int a = 0; a < NALLOC; a++) {
				runs[k][0][a][r] = bench_pair(a, sizes[k], npair);
				runs[k][1][a][r] = bench_batch(a, sizes[k], nbatch);
				runs[k][2][a][r] = bench_xthr(a, sizes[k], nx);
				runs[k][3][a][r] = bench_xfree(a, sizes[k], nxf);
				runs[k][4][a][r] = bench_shared(a, sizes[k], npair / 4);
			}
	for (int k = 0; k < NSIZES; k++)
		for (int j = 0; j < NTESTS; j++)
			for (int a = 0; a < NALLOC; a++)
				res[k][j][a] = median(runs[k][j][a], reps);

	printf("median of %d repetitions\n", reps);
	printf("%-8s %-6s %14s %10s %10s %9s %9s\n", "test", "size", names[0],
	    names[1], names[2], "/glibc", "/mimalloc");
	for (int k = 0; k < NSIZES; k++)
		for (int j = 0; j < NTESTS; j++) {
			double *v = res[k][j];
			printf("%-8s %-6zu %11.2f ns %7.2f ns %7.2f ns %9.2f %9.2f\n",
			    tests[j], sizes[k], v[0], v[1], v[2], v[0] / v[1], v[0] / v[2]);
		}
	printf("%-8s %-6s %11ld KB %7ld KB %7ld KB\n", "rss-peak", "1024",
	    rss[0][0], rss[1][0], rss[2][0]);
	printf("%-8s %-6s %11ld KB %7ld KB %7ld KB\n", "rss-free", "1024",
	    rss[0][1], rss[1][1], rss[2][1]);
	return 0;
}
