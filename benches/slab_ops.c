/*
 * slab_ops -- N malloc+free operations of one pattern, for counting
 * instructions per operation with callgrind (the same on a loaded
 * machine as on a quiet one):
 *
 *   pair N     one thread: slab_malloc(64) + slab_free, a type of its own
 *   spair N    the same on a type several threads have allocated (shared)
 *   larson N   one thread, a shared type: 1024 live blocks of random
 *              16-1024 bytes, N random replacements
 *   l64 N      larson with every block 64 bytes: one size class in one
 *              or two zones, so that every line the slab touches stays
 *              in the L1 cache (cachegrind: no simulated miss); what
 *              larson costs beyond it comes from the many zones
 *   shared N   two threads at once each doing spair N on one type
 *   l2 N       two threads each doing larson N on one type, one
 *              replacement in 16 through 64 slots both threads swap
 *              blocks into (so freed by the other thread)
 *
 * An optional last argument "tc" runs the same loops on tcmalloc's
 * tc_malloc/tc_free (libtcmalloc_minimal.so.4, loaded with dlopen).
 * Per operation: the difference of two runs' totals over the difference
 * of their N, e.g.
 *
 *   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
 *       ./build/slab_ops pair 100000 2>&1 | grep Collected
 *
 * and again with 200000.
 */
#define _GNU_SOURCE
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <libcaps/slaballoc.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

MALLOC_DEFINE(M_OPS_HOME, "ops-home", "slab_ops: one thread's type");
MALLOC_DEFINE(M_OPS_SHARED, "ops-shared", "slab_ops: a shared type");

static void *(*tc_alloc)(size_t);
static void (*tc_release)(void *);

static inline void *
xalloc(size_t sz, struct malloc_type *t)
{
	if (tc_alloc != NULL)
		return (tc_alloc(sz));
	return (slab_malloc(sz, t, M_WAITOK));
}

static inline void
xfree(void *p, struct malloc_type *t)
{
	if (tc_release != NULL)
		tc_release(p);
	else
		slab_free(p, t);
}

static void *
touch(void *arg)
{
	slab_free(slab_malloc(64, arg, M_WAITOK), arg);
	return (NULL);
}

/* Make the type shared: several threads allocate it in turn. */
static void
share(struct malloc_type *t)
{
	for (int i = 0; i < 8; i++) {
		pthread_t th;

		pthread_create(&th, NULL, touch, t);
		pthread_join(th, NULL);
		touch(t);
	}
}

static long pairs;

static void *
spair(void *arg)
{
	struct malloc_type *t = arg;

	for (long i = 0; i < pairs; i++) {
		void *p = xalloc(64, t);
		__asm__ volatile("" : : "r"(p) : "memory");
		xfree(p, t);
	}
	return (NULL);
}

#define LIVE	1024
#define SWAP	64
static void *_Atomic swap_slot[SWAP];

struct ls {
	uint32_t seed;
	long n;
	int two;
	void *live[LIVE];
};

/* The block size of a replacement: `fixed`, or 16-1024 bytes by the top
 * half of r when `fixed` is 0 (a constant in each caller, so that the
 * larson loop is the same code as before l64 existed). */
static inline __attribute__((always_inline)) size_t
ls_size(size_t fixed, uint32_t r)
{
	return (fixed != 0 ? fixed : 16 + (r >> 16) % 1009);
}

static inline __attribute__((always_inline)) void *
ls_run(struct ls *l, size_t fixed)
{
	uint32_t s = l->seed;

	for (int i = 0; i < LIVE; i++)
		l->live[i] = xalloc(ls_size(fixed, xorshift32(&s)), M_OPS_SHARED);
	for (long i = 0; i < l->n; i++) {
		uint32_t r = xorshift32(&s);
		void *p = xalloc(ls_size(fixed, r), M_OPS_SHARED), *old;

		if (l->two && (r & 15) == 0) {
			old = atomic_exchange(&swap_slot[(r >> 4) % SWAP], p);
		} else {
			old = l->live[(r >> 4) % LIVE];
			l->live[(r >> 4) % LIVE] = p;
		}
		if (old != NULL)
			xfree(old, M_OPS_SHARED);
	}
	for (int i = 0; i < LIVE; i++)
		xfree(l->live[i], M_OPS_SHARED);
	return (NULL);
}

static void *
larson(void *arg)
{
	return (ls_run(arg, 0));
}

static void *
l64(void *arg)
{
	return (ls_run(arg, 64));
}

int
main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: slab_ops pair|spair|shared|larson|l64|l2 N [tc]\n");
		return (2);
	}
	long n = atol(argv[2]);
	if (argc > 3 && strcmp(argv[3], "tc") == 0) {
		void *h = dlopen("libtcmalloc_minimal.so.4", RTLD_NOW | RTLD_LOCAL);
		if (h == NULL) {
			fprintf(stderr, "slab_ops: %s\n", dlerror());
			return (1);
		}
		tc_alloc = (void *(*)(size_t))dlsym(h, "tc_malloc");
		tc_release = (void (*)(void *))dlsym(h, "tc_free");
	}
	share(M_OPS_SHARED);
	pairs = n;
	if (strcmp(argv[1], "pair") == 0) {
		spair(M_OPS_HOME);
	} else if (strcmp(argv[1], "spair") == 0) {
		spair(M_OPS_SHARED);
	} else if (strcmp(argv[1], "shared") == 0) {
		pthread_t th;

		pthread_create(&th, NULL, spair, M_OPS_SHARED);
		spair(M_OPS_SHARED);
		pthread_join(th, NULL);
	} else if (strcmp(argv[1], "larson") == 0 || strcmp(argv[1], "l64") == 0) {
		static struct ls l;

		l.seed = 0x9e3779b9u;
		l.n = n;
		if (strcmp(argv[1], "l64") == 0)
			l64(&l);
		else
			larson(&l);
	} else if (strcmp(argv[1], "l2") == 0) {
		static struct ls l[2];
		pthread_t th[2];

		for (int i = 0; i < 2; i++) {
			l[i].seed = 0x9e3779b9u * (i + 1);
			l[i].n = n;
			l[i].two = 1;
			pthread_create(&th[i], NULL, larson, &l[i]);
		}
		for (int i = 0; i < 2; i++)
			pthread_join(th[i], NULL);
		for (int j = 0; j < SWAP; j++) {
			void *p = atomic_exchange(&swap_slot[j], NULL);
			if (p != NULL)
				xfree(p, M_OPS_SHARED);
		}
	} else {
		fprintf(stderr, "slab_ops: unknown pattern %s\n", argv[1]);
		return (2);
	}
	return (0);
}
