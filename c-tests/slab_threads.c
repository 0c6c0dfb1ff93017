/*
 * slab_threads -- the slab allocator from plain pthreads that never called
 * uthread_init(): concurrent allocation with one shared type, frees from
 * other threads (producer/consumer), blocks that outlive the thread that
 * allocated them. The statistics must come out exact: at once for threads
 * that have been joined; for a thread that goes on living, ks_calls of a
 * type several threads allocate within 100 ms (docs/compat.md).
 */
#include <libcaps/slaballoc.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

MALLOC_DEFINE(M_SHARED, "shared", "allocated by many threads");

#define NTHREADS	4
#define PER_THREAD	50000
#define RING		256

static long
sum(const long *a)
{
	long s = 0;
	for (int i = 0; i < SMP_MAXCPU; i++)
		s += a[i];
	return s;
}

/* ks_calls once it reached want, or after 2 s. */
static long long
settled_calls(long long want)
{
	struct timespec ms10 = { 0, 10 * 1000 * 1000 };
	long long c = 0;
	for (int i = 0; i < 200; i++) {
		c = __atomic_load_n(&M_SHARED->ks_calls, __ATOMIC_RELAXED);
		if (c == want)
			break;
		nanosleep(&ms10, NULL);
	}
	return c;
}

/* Each worker allocates PER_THREAD blocks, frees every other one itself
 * and hands the rest back to main. */
static void *
worker(void *arg)
{
	void **keep = arg;
	for (int i = 0; i < PER_THREAD; i++) {
		size_t n = 1 + (size_t)(i * 37 + (uintptr_t)keep) % 2000;
		char *p = slab_malloc(n, M_SHARED, 0);
		memset(p, 0x11, n);
		if (i & 1)
			slab_free(p, M_SHARED);
		else
			keep[i / 2] = p;
	}
	return NULL;
}

/* Single-producer single-consumer ring: main allocates, this frees. */
static void *volatile ring[RING];
static volatile unsigned long head, tail;
static const long NXFER = 200000;

static void *
consumer(void *arg)
{
	(void)arg;
	for (long i = 0; i < NXFER; i++) {
		while (__atomic_load_n(&tail, __ATOMIC_ACQUIRE) == head)
			;
		unsigned char *p = ring[head % RING];
		if (p[0] != (unsigned char)(head & 0xff)) {
			printf("corrupted block in transfer %ld\n", i);
			return NULL;
		}
		slab_free(p, M_SHARED);
		__atomic_store_n(&head, head + 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

int
main(void)
{
	static void *kept[NTHREADS][PER_THREAD / 2];
	pthread_t t[NTHREADS];

	for (int i = 0; i < NTHREADS; i++)
		pthread_create(&t[i], NULL, worker, kept[i]);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	printf("after workers: calls %lld, in use %ld\n",
	    (long long)M_SHARED->ks_calls, sum(M_SHARED->ks_inuse));

	/* The workers are gone: their blocks are freed from here. */
	for (int i = 0; i < NTHREADS; i++)
		for (int j = 0; j < PER_THREAD / 2; j++)
			slab_free(kept[i][j], M_SHARED);
	printf("after freeing their blocks: in use %ld, bytes %ld\n",
	    sum(M_SHARED->ks_inuse), sum(M_SHARED->ks_memuse));

	pthread_t c;
	pthread_create(&c, NULL, consumer, NULL);
	for (long i = 0; i < NXFER; i++) {
		while (tail - __atomic_load_n(&head, __ATOMIC_ACQUIRE) >= RING)
			;
		unsigned char *p = slab_malloc(64 + i % 900, M_SHARED, 0);
		p[0] = (unsigned char)(tail & 0xff);
		ring[tail % RING] = p;
		__atomic_store_n(&tail, tail + 1, __ATOMIC_RELEASE);
	}
	pthread_join(c, NULL);
	printf("after %ld cross-thread frees: in use %ld, bytes %ld, calls %lld\n",
	    NXFER, sum(M_SHARED->ks_inuse), sum(M_SHARED->ks_memuse),
	    settled_calls(NTHREADS * PER_THREAD + NXFER));
	return 0;
}
