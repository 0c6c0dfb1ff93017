/*
 * thr2 -- DragonFly BSD's test/caps/thr2.c (spec 8.3) as written: two
 * threads switch to each other a million times each; thread2 ends the
 * program. Do not edit (see README.md).
 */
#include <stdio.h>
#include <libcaps/defs.h>

extern int mp_lock;

static void thread1(void *data);
static void thread2(void *data);

int
main(int ac, char **av)
{
	thread_t td;
	thread_t td1;
	thread_t td2;

	uthread_init();
	lwkt_create(thread1, NULL, &td1, NULL, 0, -1, "thread1");
	lwkt_create(thread2, NULL, &td2, NULL, 0, -1, "thread2");
	lwkt_switch();
	printf("Main Exiting\n");
	exit(1);
}

void
thread1(void *data)
{
	int i;

	for (i = 0; i < 1000000; ++i)
		lwkt_switch();
	printf("done1\n");
}

void
thread2(void *data)
{
	int i;

	for (i = 0; i < 1000000; ++i)
		lwkt_switch();
	printf("done2\n");
	exit(0);
}
