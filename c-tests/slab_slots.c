/*
 * slab_slots -- a thread that takes over the allocator state of a thread
 * that exited gets, of the states waiting, one whose statistics slot
 * writes no cache line of a malloc_type that a running thread's slot
 * writes (when there is one): two threads allocating one type at once
 * then do not share a line of it.
 *
 * A thread's slot is seen from C as the index of ks_memuse[] that holds
 * its one 64-byte block. main takes the first slot; two threads A and B
 * take the next two, both held at once, then exit, A first (so B's state
 * is the last pooled); a third thread C then must get A's state, whose
 * slot shares no line with main's, not B's, which does.
 */
#include <libcaps/slaballoc.h>

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

MALLOC_DEFINE(M_SLOT, "slot", "blocks that show a thread's slot");

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int stage;

/* The slot whose ks_memuse changed by 64 between `before` and now. */
static int
slot_of(const long before[SMP_MAXCPU])
{
	for (int s = 0; s < SMP_MAXCPU; s++)
		if (M_SLOT->ks_memuse[s] - before[s] == 64)
			return s;
	return -1;
}

/* Allocate one 64-byte block and free it: the calling thread's slot. */
static int
my_slot(void)
{
	long before[SMP_MAXCPU];
	memcpy(before, M_SLOT->ks_memuse, sizeof before);
	void *p = slab_malloc(64, M_SLOT, M_WAITOK);
	int s = slot_of(before);
	slab_free(p, M_SLOT);
	return s;
}

static void
wait_stage(int want)
{
	pthread_mutex_lock(&mu);
	while (stage < want)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
}

static void
set_stage(int v)
{
	pthread_mutex_lock(&mu);
	stage = v;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static int slot_a, slot_b, slot_c;

static void *
thread_a(void *arg)
{
	(void)arg;
	slot_a = my_slot();
	set_stage(1);
	wait_stage(2);		/* B has its state too: both held at once */
	return NULL;
}

static void *
thread_b(void *arg)
{
	(void)arg;
	wait_stage(1);
	slot_b = my_slot();
	set_stage(2);
	wait_stage(3);		/* exits after A: its state is pooled last */
	return NULL;
}

static void *
thread_c(void *arg)
{
	(void)arg;
	slot_c = my_slot();
	return NULL;
}

/* Do slots s and t write a common line of a 64-byte aligned type? */
static int
clash(int s, int t)
{
	size_t m = offsetof(struct malloc_type, ks_memuse);
	size_t u = offsetof(struct malloc_type, ks_inuse);
	return (m + 8 * s) / 64 == (m + 8 * t) / 64 ||
	    (u + 8 * s) / 64 == (u + 8 * t) / 64;
}

int
main(void)
{
	pthread_t a, b, c;
	int slot_main = my_slot();

	pthread_create(&a, NULL, thread_a, NULL);
	pthread_create(&b, NULL, thread_b, NULL);
	pthread_join(a, NULL);	/* A's state pooled first, B's last */
	set_stage(3);
	pthread_join(b, NULL);
	pthread_create(&c, NULL, thread_c, NULL);
	pthread_join(c, NULL);

	if (slot_main < 0 || slot_a < 0 || slot_b < 0 || slot_c < 0) {
		printf("slot not found: main %d, A %d, B %d, C %d\n", slot_main,
		    slot_a, slot_b, slot_c);
		return 1;
	}
	if (clash(slot_main, slot_a) == clash(slot_main, slot_b)) {
		printf("no choice to test: main %d, A %d, B %d\n", slot_main,
		    slot_a, slot_b);
		return 1;
	}
	int want = clash(slot_main, slot_a) ? slot_b : slot_a;
	fprintf(stderr, "main %d, A %d, B %d, C %d\n", slot_main, slot_a, slot_b, slot_c);
	if (slot_c != want) {
		printf("C took slot %d, which shares a line of a type with main's; "
		    "slot %d was waiting\n", slot_c, want);
		return 1;
	}
	printf("ok\n");
	return 0;
}
