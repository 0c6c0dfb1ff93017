/*
 * thr2 -- context switch test, after DragonFly's /usr/src/test/caps/thr2.c
 * (V3): two threads call lwkt_switch() 1,000,000 times each, round robin
 * between them. thread1 prints done1 and exits; thread2 prints done2 and
 * ends the program with exit(0), so main never prints its line.
 *
 * Added checks: the two threads must strictly alternate while both run
 * (each switch lands in the other thread), and the library's verbose exit
 * line is switched off (TDF_VERBOSE) because it contains an address.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdio.h>
#include <stdlib.h>

#define LOOPS	1000000

static volatile int turn;
static int bad;

static void
thread1(void *arg)
{
	int i;

	(void)arg;
	for (i = 0; i < LOOPS; ++i) {
		turn = 1;
		lwkt_switch();
		if (turn != 2)
			++bad;
	}
	printf("done1 bad=%d\n", bad);
}

static void
thread2(void *arg)
{
	int i;

	(void)arg;
	for (i = 0; i < LOOPS; ++i) {
		/* thread1 runs one switch ahead; after it exits we run alone. */
		if (i < LOOPS - 1 && turn != 1)
			++bad;
		turn = 2;
		lwkt_switch();
	}
	printf("done2 bad=%d\n", bad);
	exit(0);
}

int
main(void)
{
	thread_t td1, td2;

	uthread_init();
	lwkt_create(thread1, NULL, &td1, NULL, 0, -1, "thread1");
	lwkt_create(thread2, NULL, &td2, NULL, 0, -1, "thread2");
	td1->td_flags &= ~TDF_VERBOSE;
	td2->td_flags &= ~TDF_VERBOSE;
	lwkt_deschedule_self();
	lwkt_switch();
	printf("Main Exiting\n");
	return (0);
}
