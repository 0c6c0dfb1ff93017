/*
 * slab_bench -- the libcaps slab allocator against glibc malloc and
 * mimalloc, in one run on the same machine:
 *
 *   pair   slab_malloc + slab_free of one block, repeated (hot path)
 *   batch  1000 allocations, then 1000 frees in the same order; per pair
 *   xthr   one thread allocates, another frees (SPSC ring); per block
 *   rss    resident memory after allocating 256 MiB in 1 KiB blocks and
 *          freeing them all (each allocator in its own forked child)
 *
 * Usage: slab_bench [scale]   (scale 1 = default, smaller = shorter run)
 * Prints a table and each slab figure's ratio to glibc and mimalloc.
 */
#define _GNU_SOURCE
#include <libcaps/slaballoc.h>
#include <mimalloc.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

MALLOC_DEFINE(M_BENCH, "bench", "benchmark blocks");

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

static void *
consumer(void *arg)
{
	(void)arg;
	for (long i = 0; i < xn; i++) {
		while (atomic_load_explicit(&rtail, memory_order_acquire) ==
		    atomic_load_explicit(&rhead, memory_order_relaxed))
			;
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
		while (tl - atomic_load_explicit(&rhead, memory_order_acquire) >= RING)
			;
		ring[tl % RING] = xalloc(a, sz);
		atomic_store_explicit(&rtail, tl + 1, memory_order_release);
	}
	pthread_join(th, NULL);
	return (now_ns() - t0) / n;
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

int
main(int argc, char **argv)
{
	double scale = argc > 1 ? atof(argv[1]) : 1.0;
	long npair = (long)(5e6 * scale), nbatch = (long)(2000 * scale);
	long nx = (long)(1e6 * scale);
	static const size_t sizes[] = { 16, 64, 256, 1024 };
	double pair[4][NALLOC], batch[4][NALLOC], xthr[4][NALLOC];
	long rss[NALLOC][2];

	slab_init();
	/* RSS first, in fresh children, before this process warms anything. */
	for (int a = 0; a < NALLOC; a++)
		bench_rss(a, rss[a]);
	for (int k = 0; k < 4; k++)
		for (int a = 0; a < NALLOC; a++) {
			pair[k][a] = bench_pair(a, sizes[k], npair);
			batch[k][a] = bench_batch(a, sizes[k], nbatch);
			xthr[k][a] = bench_xthr(a, sizes[k], nx);
		}

	printf("%-8s %-6s %14s %10s %10s %9s %9s\n", "test", "size", names[0],
	    names[1], names[2], "/glibc", "/mimalloc");
	for (int k = 0; k < 4; k++) {
		const char *t[3] = { "pair", "batch", "xthread" };
		double (*m[3])[NALLOC] = { pair, batch, xthr };
		for (int j = 0; j < 3; j++) {
			double *v = m[j][k];
			printf("%-8s %-6zu %11.2f ns %7.2f ns %7.2f ns %9.2f %9.2f\n",
			    t[j], sizes[k], v[0], v[1], v[2], v[0] / v[1], v[0] / v[2]);
		}
	}
	printf("%-8s %-6s %11ld KB %7ld KB %7ld KB\n", "rss-peak", "1024",
	    rss[0][0], rss[1][0], rss[2][0]);
	printf("%-8s %-6s %11ld KB %7ld KB %7ld KB\n", "rss-free", "1024",
	    rss[0][1], rss[1][1], rss[2][1]);
	return 0;
}
