/*
 * slab_bad -- bad input to the slab allocator: each mode makes one mistake
 * and the process must abort with a message naming it (or, for the
 * limit under M_NULLOK, get NULL back).
 */
#include <libcaps/slaballoc.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	} else {
		printf("unknown mode\n");
		return 2;
	}
	printf("not detected\n");
	return 1;
}
