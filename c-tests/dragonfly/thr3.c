/*
 * thr3 -- threads on two virtual cpus, and a main thread that sleeps
 * until they are all gone (UPC_CONTROL_WAIT in the original), twice.
 *
 * Our program, written for libcaps for Linux from the description of
 * DragonFly BSD's test/caps/thr3.c in the libcaps spec (section 8.4);
 * not a copy of DragonFly's file.  It includes only <stdio.h> and
 * <libcaps/defs.h>, as the original did; getpid() comes through the
 * latter.
 */
#include <stdio.h>
#include <libcaps/defs.h>

static void	spin_local(void *);
static void	spin_remote(void *);
static void	one_round(int);

int
main(int argc, char **argv)
{
	int other;

	uthread_init();
	other = caps_fork_vcpu();
	printf("caps_fork_vcpu %d\n", other);

	one_round(other);
	printf("Main thread resumed after all children exiting.\n");

	printf("Running test a second time to see if UPC_CONTROL_WAIT works\n");
	one_round(other);
	printf("Main thread resumed after second test, exiting\n");
	exit(0);
}

/*
 * Start one thread here and one on cpu `other', then take main off the
 * run queue; the idle loop puts it back once nothing else is left.
 */
static void
one_round(int other)
{
	thread_t td;

	lwkt_create(spin_local, NULL, &td, NULL, 0, -1, "thread1");
	lwkt_create(spin_remote, NULL, &td, NULL, 0, other, "thread2");
	lwkt_deschedule_self();
	lwkt_switch();
}

static void
spin_local(void *unused)
{
	int i;

	printf("start1 pri %d mp %d\n", curthread->td_pri,
	    curthread->td_mpcount);
	rel_mplock();
	for (i = 0; i < 100000000; i++)
		lwkt_switch();
	printf("done1 %d\n", getpid());
}

static void
spin_remote(void *unused)
{
	int i;

	printf("start2 pri %d mp %d\n", curthread->td_pri,
	    curthread->td_mpcount);
	for (i = 0; i < 10000000; i++)
		lwkt_switch();
	printf("done2 %d\n", getpid());
}
