/* slab_basic: the slaballoc.h API from C -- MALLOC_DEFINE, every size
 * class, alignment, M_ZERO, zero-length allocations, realloc, oversized
 * mappings and the malloc_type statistics. */
#include <libcaps/slaballoc.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

MALLOC_DEFINE(M_TEST, "test", "slab_basic test buffers");

static long
sum(const long *a)
{
	long s = 0;
	for (int i = 0; i < SMP_MAXCPU; i++)
		s += a[i];
	return s;
}

int
main(void)
{
	static void *p[16384];
	int bad = 0;

	slab_init();

	/* Every request size up to the zone limit, held at once. */
	long bytes = 0;
	for (unsigned long n = 1; n < 16384; n++) {
		p[n] = slab_malloc(n, M_TEST, M_WAITOK);
		memset(p[n], (int)(n & 0xff), n);
		uintptr_t a = (uintptr_t)p[n];
		unsigned long al = (n & (n - 1)) == 0 ? (n >= 8 ? n : 8) : 8;
		if (a % al != 0) {
			printf("size %lu misaligned at %p\n", n, p[n]);
			bad = 1;
		}
		if (n % 4096 == 0 && a % 4096 != 0) {
			printf("page multiple %lu not page aligned\n", n);
			bad = 1;
		}
	}
	for (unsigned long n = 1; n < 16384; n++) {
		const unsigned char *c = p[n];
		for (unsigned long i = 0; i < n; i++)
			if (c[i] != (n & 0xff)) {
				printf("size %lu corrupted\n", n);
				bad = 1;
				break;
			}
	}
	printf("in use after 16383 allocations: %ld\n", sum(M_TEST->ks_inuse));
	(void)bytes;
	for (unsigned long n = 1; n < 16384; n++)
		slab_free(p[n], M_TEST);
	printf("in use after freeing them: %ld, bytes %ld\n",
	    sum(M_TEST->ks_inuse), sum(M_TEST->ks_memuse));

	/* Zero-length allocations. */
	void *z = slab_malloc(0, M_TEST, 0);
	printf("malloc(0) is %s\n", z != NULL ? "non-NULL" : "NULL");
	slab_free(z, M_TEST);

	/* M_ZERO on recycled memory. */
	char *d = slab_malloc(100, M_TEST, 0);
	memset(d, 0x5a, 100);
	slab_free(d, M_TEST);
	d = slab_malloc(100, M_TEST, M_ZERO);
	int nz = 0;
	for (int i = 0; i < 100; i++)
		nz |= d[i];
	printf("M_ZERO memory is %s\n", nz ? "dirty" : "zero");

	/* realloc keeps the contents, in place within a size class. */
	memcpy(d, "hello, slab", 12);
	char *e = slab_realloc(d, 104, M_TEST, 0);
	printf("realloc 100->104 %s\n", e == d ? "in place" : "moved");
	e = slab_realloc(e, 5000, M_TEST, 0);
	printf("realloc to 5000: \"%s\"\n", e);
	e = slab_realloc(e, 40000, M_TEST, 0);
	printf("realloc to 40000: \"%s\", page aligned %s\n", e,
	    ((uintptr_t)e & 4095) == 0 ? "yes" : "no");
	printf("realloc to 0 gives %s\n",
	    slab_realloc(e, 0, M_TEST, 0) == NULL ? "NULL" : "non-NULL");

	/* Oversized statistics are page-rounded. */
	void *big = slab_malloc(100000, M_TEST, 0);
	printf("100000 bytes charged as %ld\n", sum(M_TEST->ks_memuse));
	slab_free(big, M_TEST);

	printf("final: inuse %ld memuse %ld calls %lld\n", sum(M_TEST->ks_inuse),
	    sum(M_TEST->ks_memuse), (long long)M_TEST->ks_calls);
	slab_malloc_uninit(M_TEST);
	return bad;
}
