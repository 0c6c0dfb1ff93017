/*
 * slab_bench -- the libcaps slab allocator against glibc malloc, mimalloc,
 * jemalloc and tcmalloc, in one run on the same machine:
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
 *   larson  larson-like: two threads at once, each replacing a random one
 *           of its 1024 live blocks by a new one of a random size from 16
 *           to 1024 bytes; one replacement in 16 goes through 64 slots
 *           both threads swap blocks into, so a block is sometimes freed
 *           by the thread that did not allocate it (one malloc_type for
 *           the slab); wall time per replacement and thread
 *   rss     resident memory after allocating 256 MiB in 1 KiB blocks and
 *           freeing them all (each allocator in its own forked child)
 *
 * The columns, and what makes each one what its label says:
 *
 *   glibc     __libc_malloc / __libc_free, glibc's own entry points (a
 *             library linked in that exports these names too, as Debian's
 *             mimalloc does, would take them over: the check below stops
 *             the program then);
 *   mimalloc  mi_malloc / mi_free,
 *   jemalloc  malloc / free of libjemalloc.so.2,
 *   tcmalloc  tc_malloc / tc_free of libtcmalloc_minimal.so.4:
 *             each dlopen()ed with RTLD_LOCAL (none of them replaces the
 *             process's malloc) and called through dlsym() on its handle.
 *
 * At start the program looks up with dladdr() which object each called
 * function lives in, prints it, and stops if one is not where its label
 * says, or if the process's own malloc/free are not glibc's. jemalloc needs
 * more static TLS than glibc keeps for dlopen(), so the program starts
 * itself again once with GLIBC_TUNABLES=glibc.rtld.optional_static_tls.
 *
 * Each figure is the median of REPS repetitions; the allocators take
 * turns within each repetition, so a burst of load from other processes
 * hits all of them alike.
 *
 * Usage: slab_bench [scale [reps]]  (scale 1 = default, smaller = shorter;
 * reps 5 by default). Prints a table and each slab figure's ratio to the
 * four others.
 */
#define _GNU_SOURCE
#include <libcaps/slaballoc.h>

#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

/* glibc's own malloc and free (checked with dladdr at start). */
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);

MALLOC_DEFINE(M_BENCH, "bench", "benchmark blocks");
MALLOC_DEFINE(M_SHARED, "shared", "blocks of two threads at once");
MALLOC_DEFINE(M_LARSON, "larson", "blocks of the larson-like test");

enum { A_SLAB, A_GLIBC, A_MI, A_JE, A_TC, NALLOC };

struct allocator {
	const char	*name;		/* column label */
	const char	*soname;	/* dlopen()ed; NULL: linked */
	const char	*package;	/* Debian package with soname */
	const char	*sym_alloc, *sym_free;
	const char	*object;	/* what the functions' object path contains */
	void		*(*alloc)(size_t);
	void		(*release)(void *);
};

static struct allocator tab[NALLOC] = {
	[A_SLAB] = { "libcaps slab", NULL, NULL, "slab_malloc", "slab_free",
	    "libcaps.so", NULL, NULL },
	[A_GLIBC] = { "glibc", NULL, NULL, "__libc_malloc", "__libc_free",
	    "libc.so", __libc_malloc, __libc_free },
	[A_MI] = { "mimalloc", "libmimalloc.so.2", "libmimalloc2.0", "mi_malloc",
	    "mi_free", "libmimalloc.so", NULL, NULL },
	[A_JE] = { "jemalloc", "libjemalloc.so.2", "libjemalloc2", "malloc",
	    "free", "libjemalloc.so", NULL, NULL },
	[A_TC] = { "tcmalloc", "libtcmalloc_minimal.so.4", "libtcmalloc-minimal4",
	    "tc_malloc", "tc_free", "libtcmalloc_minimal.so", NULL, NULL },
};

static inline void *
xalloc(int a, size_t n, struct malloc_type *type)
{
	switch (a) {
	case A_SLAB: return slab_malloc(n, type, M_WAITOK);
	case A_GLIBC: return __libc_malloc(n);
	default: return tab[a].alloc(n);
	}
}

static inline void
xfree(int a, void *p, struct malloc_type *type)
{
	switch (a) {
	case A_SLAB: slab_free(p, type); break;
	case A_GLIBC: __libc_free(p); break;
	default: tab[a].release(p); break;
	}
}

/* ---- which allocator is which ------------------------------------------ */

#define TLS_MARK	"SLAB_BENCH_STATIC_TLS"
#define TLS_TUNABLE	"glibc.rtld.optional_static_tls=16384"

/* Start again with room for jemalloc's initial-exec TLS (once). */
static void
reexec_with_static_tls(char **argv)
{
	const char *old = getenv("GLIBC_TUNABLES");
	char *v;

	if (getenv(TLS_MARK) != NULL)
		return;
	if (asprintf(&v, "%s%s%s", old ? old : "", old ? ":" : "", TLS_TUNABLE) < 0)
		return;
	setenv("GLIBC_TUNABLES", v, 1);
	setenv(TLS_MARK, "1", 1);
	execv("/proc/self/exe", argv);
	perror("slab_bench: execv /proc/self/exe (going on without more static TLS)");
}

/* The object `fn` lives in, or stop if it is not one whose path has `want`. */
static const char *
object_of(const char *what, void *fn, const char *want)
{
	Dl_info info;

	if (fn == NULL || dladdr(fn, &info) == 0 || info.dli_fname == NULL) {
		fprintf(stderr, "slab_bench: %s: no object found\n", what);
		exit(1);
	}
	if (strstr(info.dli_fname, want) == NULL) {
		fprintf(stderr, "slab_bench: %s is in %s, not in %s\n", what,
		    info.dli_fname, want);
		exit(1);
	}
	return (info.dli_fname);
}

static void
load_allocators(void)
{
	for (int a = 0; a < NALLOC; a++) {
		struct allocator *al = &tab[a];
		void *h;

		if (al->soname == NULL)
			continue;
		h = dlopen(al->soname, RTLD_LOCAL | RTLD_NOW);
		if (h == NULL) {
			fprintf(stderr, "slab_bench: %s: %s\n  install it with: "
			    "apt-get install %s\n", al->name, dlerror(), al->package);
			exit(1);
		}
		al->alloc = (void *(*)(size_t))dlsym(h, al->sym_alloc);
		al->release = (void (*)(void *))dlsym(h, al->sym_free);
		if (al->alloc == NULL || al->release == NULL) {
			fprintf(stderr, "slab_bench: %s: %s or %s missing in %s\n",
			    al->name, al->sym_alloc, al->sym_free, al->soname);
			exit(1);
		}
	}
}

/* Print where every column's functions are; stop at the first mismatch. */
static void
prove_columns(void)
{
	void *fns[NALLOC][2] = {
		[A_SLAB] = { (void *)slab_malloc, (void *)slab_free },
	};

	for (int a = A_GLIBC; a < NALLOC; a++) {
		fns[a][0] = (void *)tab[a].alloc;
		fns[a][1] = (void *)tab[a].release;
	}
	printf("%-13s %-26s %s\n", "column", "calls", "object (dladdr)");
	for (int a = 0; a < NALLOC; a++) {
		const char *o = object_of(tab[a].sym_alloc, fns[a][0], tab[a].object);

		object_of(tab[a].sym_free, fns[a][1], tab[a].object);
		printf("%-13s %-13s %-12s %s\n", tab[a].name, tab[a].sym_alloc,
		    tab[a].sym_free, o);
	}
	/* Nothing replaced the process's malloc (the old -lmimalloc did). */
	printf("%-13s %-13s %-12s %s\n", "(process)", "malloc", "free",
	    object_of("the process's malloc", (void *)malloc, "libc.so"));
	object_of("the process's free", (void *)free, "libc.so");
	printf("\n");
}

/* ---- the tests ---------------------------------------------------------- */

static void *volatile sink;

static double
bench_pair(int a, size_t sz, long n)
{
	for (long i = 0; i < n / 10; i++) {
		void *p = xalloc(a, sz, M_BENCH);
		sink = p;
		xfree(a, p, M_BENCH);
	}
	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		void *p = xalloc(a, sz, M_BENCH);
		sink = p;
		xfree(a, p, M_BENCH);
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
			objs[j] = xalloc(a, sz, M_BENCH);
		for (int j = 0; j < 1000; j++)
			xfree(a, objs[j], M_BENCH);
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
		xfree(xa, ring[h % RING], M_BENCH);
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
		ring[tl % RING] = xalloc(a, sz, M_BENCH);
		atomic_store_explicit(&rtail, tl + 1, memory_order_release);
	}
	pthread_join(th, NULL);
	return (now_ns() - t0) / n;
}

/* shared: both threads run pair loops on one type. The block is kept
 * from being optimized away by an empty asm, not by a store to `sink`:
 * both threads storing to one global moved its cache line between the
 * cores on every pair, a cost of the harness (about 3.5 ns a pair on the
 * 2-core VM) added to every allocator's figure. */
static size_t sh_sz;
static long sh_n;

static void
sh_loop(int a)
{
	for (long i = 0; i < sh_n; i++) {
		void *p = xalloc(a, sh_sz, M_SHARED);
		__asm__ volatile("" : : "r"(p) : "memory");
		xfree(a, p, M_SHARED);
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
			xfree(xa, xf_blk[j], M_BENCH);
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
			xf_blk[j] = xalloc(a, sz, M_BENCH);
		atomic_store_explicit(&xf_turn, 1, memory_order_release);
	}
	xf_wait(0);
	atomic_store_explicit(&xf_turn, 2, memory_order_release);
	pthread_join(th, NULL);
	return xf_ns / (rounds * (double)XF);
}

/* larson: random sizes, random replacements, some blocks cross over. */
#define LS_LIVE		1024	/* live blocks per thread (a power of 2) */
#define LS_SWAP		64	/* slots both threads swap blocks into */
static void *_Atomic ls_swap[LS_SWAP];
static pthread_barrier_t ls_bar;

struct ls_thread {
	int		a;
	uint32_t	seed;
	long		n;
	double		t0, t1;	/* this thread's timed part */
	void		*live[LS_LIVE];
};

/* 16 to 1024 bytes from the top half of r. */
static inline size_t
ls_size(uint32_t r)
{
	return (16 + (r >> 16) % 1009);
}

static void *
ls_run(void *arg)
{
	struct ls_thread *t = arg;
	uint32_t s = t->seed;

	for (int i = 0; i < LS_LIVE; i++)
		t->live[i] = xalloc(t->a, ls_size(xorshift32(&s)), M_LARSON);
	pthread_barrier_wait(&ls_bar);
	t->t0 = now_ns();
	for (long i = 0; i < t->n; i++) {
		uint32_t r = xorshift32(&s);
		void *p = xalloc(t->a, ls_size(r), M_LARSON), *old;

		if ((r & 15) == 0) {
			old = atomic_exchange_explicit(&ls_swap[(r >> 4) % LS_SWAP],
			    p, memory_order_acq_rel);
		} else {
			old = t->live[(r >> 4) % LS_LIVE];
			t->live[(r >> 4) % LS_LIVE] = p;
		}
		if (old != NULL)
			xfree(t->a, old, M_LARSON);
	}
	t->t1 = now_ns();
	pthread_barrier_wait(&ls_bar);
	for (int i = 0; i < LS_LIVE; i++)
		xfree(t->a, t->live[i], M_LARSON);
	return NULL;
}

static double
bench_larson(int a, long n)
{
	static struct ls_thread th[2];
	pthread_t id[2];

	pthread_barrier_init(&ls_bar, NULL, 2);
	for (int i = 0; i < 2; i++) {
		th[i].a = a;
		th[i].seed = 0x9e3779b9u * (i + 1);
		th[i].n = n;
		pthread_create(&id[i], NULL, ls_run, &th[i]);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(id[i], NULL);
	for (int j = 0; j < LS_SWAP; j++) {
		void *p = atomic_exchange(&ls_swap[j], NULL);
		if (p != NULL)
			xfree(a, p, M_LARSON);
	}
	pthread_barrier_destroy(&ls_bar);
	/* wall clock from the first start to the last end */
	return (fmax(th[0].t1, th[1].t1) - fmin(th[0].t0, th[1].t0)) / n;
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
		void *warm = xalloc(a, 1024, M_BENCH);
		xfree(a, warm, M_BENCH);
		long r0 = rss_kb(getpid());
		for (long i = 0; i < RSS_N; i++) {
			rss_v[i] = xalloc(a, 1024, M_BENCH);
			memset(rss_v[i], 1, 1024);
		}
		r[0] = rss_kb(getpid()) - r0;
		for (long i = 0; i < RSS_N; i++)
			xfree(a, rss_v[i], M_BENCH);
		r[1] = rss_kb(getpid()) - r0;
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

static void
print_row(const char *test, const char *size, const double *v)
{
	printf("%-8s %-8s %9.2f %9.2f %9.2f %9.2f %9.2f ", test, size, v[0],
	    v[1], v[2], v[3], v[4]);
	for (int a = A_GLIBC; a < NALLOC; a++)
		printf(" %5.2f", v[0] / v[a]);
	printf("\n");
}

#define NSIZES 4
#define NTESTS 5
#define MAXREPS 99

int
main(int argc, char **argv)
{
	reexec_with_static_tls(argv);
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
	static double lsruns[NALLOC][MAXREPS];
	double res[NSIZES][NTESTS][NALLOC], lsres[NALLOC];
	long rss[NALLOC][2];

	load_allocators();
	prove_columns();
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
	for (int r = 0; r < reps; r++)
		for (int a = 0; a < NALLOC; a++)
			lsruns[a][r] = bench_larson(a, npair / 4);
	for (int k = 0; k < NSIZES; k++)
		for (int j = 0; j < NTESTS; j++)
			for (int a = 0; a < NALLOC; a++)
				res[k][j][a] = median(runs[k][j][a], reps);
	for (int a = 0; a < NALLOC; a++)
		lsres[a] = median(lsruns[a], reps);

	printf("ns, median of %d repetitions; the last columns are libcaps slab / each other\n", reps);
	printf("%-8s %-8s %9s %9s %9s %9s %9s  %5s %5s %5s %5s\n", "test", "size",
	    "slab", "glibc", "mimalloc", "jemalloc", "tcmalloc", "/gl", "/mi", "/je", "/tc");
	for (int k = 0; k < NSIZES; k++)
		for (int j = 0; j < NTESTS; j++) {
			char size[16];

			snprintf(size, sizeof size, "%zu", sizes[k]);
			print_row(tests[j], size, res[k][j]);
		}
	print_row("larson", "16-1024", lsres);
	for (int i = 0; i < 2; i++) {
		printf("%-8s %-8s", i == 0 ? "rss-peak" : "rss-free", "1024");
		for (int a = 0; a < NALLOC; a++)
			printf(" %6ld KB", rss[a][i]);
		printf("\n");
	}
	return 0;
}
