/*
 * slab_bad -- bad input to the slab allocator: each mode makes one mistake
 * and the process must abort with a message naming it (or, for the
 * limit under M_NULLOK, get NULL back; "nomem": every way of getting
 * NULL back sets errno to ENOMEM).
 */
#include <libcaps/slaballoc.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

MALLOC_DEFINE(M_ONE, "one", "first test type");
MALLOC_DEFINE(M_TWO, "two", "second test type");

static void *remote_arg;

static void *
remote_free(void *arg)
{
	(void)arg;
	slab_free(remote_arg, M_ONE);
	return NULL;
}

static void
free_elsewhere(void *p)
{
	pthread_t t;

	remote_arg = p;
	pthread_create(&t, NULL, remote_free, NULL);
	pthread_join(t, NULL);
}

/* One call that must fail: print whether it returned NULL and errno. */
#define TRY(what, call) do {						\
	errno = 0;							\
	void *r_ = (call);						\
	printf("%s: %s, errno %s\n", (what), r_ ? "memory" : "NULL",	\
	    errno == ENOMEM ? "ENOMEM" : errno == 0 ? "0" : "other");	\
} while (0)

/* Every path on which slab_malloc/slab_realloc return NULL sets ENOMEM. */
static int
nomem(void)
{
	TRY("huge M_NOWAIT", slab_malloc((size_t)1 << 50, M_TWO, M_NOWAIT));
	TRY("huge M_NULLOK", slab_malloc((size_t)1 << 50, M_TWO, M_NULLOK));
	TRY("too large M_NOWAIT", slab_malloc(SIZE_MAX, M_TWO, M_NOWAIT));
	char *old = slab_malloc(100, M_TWO, 0);
	memset(old, 0x77, 100);
	TRY("realloc huge M_NOWAIT",
	    slab_realloc(old, (size_t)1 << 50, M_TWO, M_NOWAIT));
	printf("old block kept: %s\n", old[0] == 0x77 && old[99] == 0x77 ?
	    "yes" : "no");

	M_ONE->ks_limit = 4096;
	TRY("over limit, zone", slab_malloc(5000, M_ONE, M_NOWAIT));
	TRY("over limit, mapping", slab_malloc(65536, M_ONE, M_NULLOK));
	char *small = slab_malloc(64, M_ONE, M_NOWAIT);
	TRY("realloc over limit", slab_realloc(small, 60000, M_ONE, M_NOWAIT));
	slab_free(small, M_ONE);

	/* No address space left for another zone. */
	struct rlimit rl = { 64L << 20, 64L << 20 };
	setrlimit(RLIMIT_AS, &rl);
	void *last = NULL;
	errno = 0;
	for (long i = 0; i < (64L << 20) / 512; i++) {
		last = slab_malloc(512, M_TWO, M_NOWAIT);
		if (last == NULL)
			break;
	}
	printf("zone mapping fails: %s, errno %s\n", last ? "memory" : "NULL",
	    errno == ENOMEM ? "ENOMEM" : errno == 0 ? "0" : "other");
	return 0;
}

int
main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	char *p;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (strcmp(mode, "foreign") == 0) {
		p = malloc(64);
		printf("freeing a libc pointer\n");
		slab_free(p, M_ONE);
	} else if (strcmp(mode, "stack") == 0) {
		char buf[64];
		printf("freeing a stack pointer\n");
		slab_free(buf, M_ONE);
	} else if (strcmp(mode, "interior") == 0) {
		p = slab_malloc(100, M_ONE, 0);
		printf("freeing the inside of a chunk\n");
		slab_free(p + 8, M_ONE);
	} else if (strcmp(mode, "double") == 0) {
		p = slab_malloc(100, M_ONE, 0);
		slab_free(p, M_ONE);
		printf("freeing it again\n");
		slab_free(p, M_ONE);
	} else if (strcmp(mode, "double-remote") == 0) {
		p = slab_malloc(100, M_ONE, 0);
		free_elsewhere(p);
		printf("freed by another thread; freeing it again\n");
		slab_free(p, M_ONE);
	} else if (strcmp(mode, "double-oversized") == 0) {
		p = slab_malloc(100000, M_ONE, 0);
		slab_free(p, M_ONE);
		printf("freeing a mapping again\n");
		slab_free(p, M_ONE);
	} else if (strcmp(mode, "wrong-type") == 0) {
		p = slab_malloc(100, M_ONE, 0);
		slab_malloc(100, M_TWO, 0);
		printf("freeing with the wrong type\n");
		slab_free(p, M_TWO);
	} else if (strcmp(mode, "wrong-type-oversized") == 0) {
		p = slab_malloc(100000, M_ONE, 0);
		printf("freeing a mapping with the wrong type\n");
		slab_free(p, M_TWO);
	} else if (strcmp(mode, "no-magic") == 0) {
		static struct malloc_type bogus;
		printf("allocating with a type without M_MAGIC\n");
		slab_malloc(10, &bogus, 0);
	} else if (strcmp(mode, "limit") == 0) {
		M_ONE->ks_limit = 4096;
		for (int i = 0; i < 4; i++)
			slab_malloc(1024, M_ONE, 0);
		printf("4 KiB allocated, limit 4 KiB\n");
		slab_malloc(1024, M_ONE, 0);
	} else if (strcmp(mode, "limit-nullok") == 0) {
		M_ONE->ks_limit = 4096;
		for (int i = 0; i < 4; i++)
			slab_malloc(1024, M_ONE, M_NULLOK);
		printf("5th: %s\n", slab_malloc(1024, M_ONE, M_NULLOK) ? "memory" : "NULL");
		printf("M_NOWAIT: %s\n", slab_malloc(1024, M_ONE, M_NOWAIT) ? "memory" : "NULL");
		return 0;
	} else if (strcmp(mode, "nomem") == 0) {
		return nomem();
	} else {
		printf("unknown mode\n");
		return 2;
	}
	printf("not detected\n");
	return 1;
}
