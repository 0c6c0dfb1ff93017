/*
 * thr3 -- DragonFly BSD's test/caps/thr3.c (spec 8.4) as written: a second
 * virtual cpu; thread1 (cpu 0, MP lock released) switches 100,000,000
 * times, thread2 (the new cpu) 10,000,000 times; main waits for both,
 * twice. Do not edit (see README.md).
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
	int tcpu;

	uthread_init();
	tcpu = caps_fork_vcpu();
	printf("caps_fork_vcpu %d\n", tcpu);
	lwkt_create(thread1, NULL, &td1, NULL, 0, -1, "thread1");
	lwkt_create(thread2, NULL, &td2, NULL, 0, tcpu, "thread2");
	lwkt_deschedule_self();
	lwkt_switch();
	printf("Main thread resumed after all children exiting.\n");
	printf("Running test a second time to see if UPC_CONTROL_WAIT works\n");
	lwkt_create(thread1, NULL, &td1, NULL, 0, -1, "thread1");
	lwkt_create(thread2, NULL, &td2, NULL, 0, tcpu, "thread2");
	lwkt_deschedule_self();
	lwkt_switch();
	printf("Main thread resumed after second test, exiting\n");
	exit(0);
}

void
thread1(void *data)
{
	int i;

	printf("start1 pri %d mp %d\n", curthread->td_pri, curthread->td_mpcount);
	rel_mplock();
	for (i = 0; i < 100000000; ++i)
		lwkt_switch();
	printf("done1 %d\n", (int)getpid());
}

void
thread2(void *data)
{
	int i;

	printf("start2 pri %d mp %d\n", curthread->td_pri, curthread->td_mpcount);
	for (i = 0; i < 10000000; ++i)
		lwkt_switch();
	printf("done2 %d\n", (int)getpid());
}
