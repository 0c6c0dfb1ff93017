/*
 * thr3 -- virtual cpus, after DragonFly's /usr/src/test/caps/thr3.c (V3):
 * main forks one virtual cpu, starts thread1 on its own cpu (it drops the
 * MP lock it was born with, then switches LOOPS times) and thread2 on the
 * new cpu (switches LOOPS times holding the MP lock), and descheduls
 * itself; the idle loop resumes main when both have exited. The whole
 * experiment runs twice (the original checked that a halted cpu wakes up
 * again).
 *
 * The two cpus print concurrently, so the order of their lines varies;
 * tests/vcpu.rs checks ordering rules instead of an exact transcript.
 * Loop counts are smaller than the original's 100,000,000 / 10,000,000.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define LOOPS	1000000

static int tcpu;
static int main_ktid;

static void
thread1(void *arg)
{
	int i;

	(void)arg;
	printf("start1 pri %d mp %d cpu %d\n", curthread->td_pri,
	    curthread->td_mpcount, mycpu->gd_cpuid);
	rel_mplock();
	for (i = 0; i < LOOPS; ++i)
		lwkt_switch();
	printf("done1 cpu %d own-kthread %d\n", mycpu->gd_cpuid,
	    mycpu->gd_pid != main_ktid);
}

static void
thread2(void *arg)
{
	int i;

	(void)arg;
	printf("start2 pri %d mp %d cpu %d\n", curthread->td_pri,
	    curthread->td_mpcount, mycpu->gd_cpuid);
	for (i = 0; i < LOOPS; ++i)
		lwkt_switch();
	printf("done2 cpu %d own-kthread %d mplock-ours %d\n", mycpu->gd_cpuid,
	    mycpu->gd_pid != main_ktid, mp_lock == (int)mycpu->gd_cpuid);
}

static void
experiment(void)
{
	lwkt_create(thread1, NULL, NULL, NULL, 0, -1, "thread1");
	lwkt_create(thread2, NULL, NULL, NULL, 0, tcpu, "thread2");
	lwkt_deschedule_self();
	lwkt_switch();
}

int
main(void)
{
	uthread_init();
	main_ktid = mycpu->gd_pid;
	tcpu = caps_fork_vcpu();
	printf("caps_fork_vcpu %d\n", tcpu);
	experiment();
	printf("Main thread resumed after all children exiting.\n");
	printf("Running test a second time to see if UPC_CONTROL_WAIT works\n");
	experiment();
	printf("Main thread resumed after second test, exiting\n");
	exit(0);
}
