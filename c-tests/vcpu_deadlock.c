/*
 * vcpu_deadlock -- with two cpus, every thread blocked and nothing left
 * that could wake one (no message in flight, no socket): the library
 * reports the deadlock and aborts instead of sleeping forever.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>

#include <stdio.h>

static void
waiter(void *arg)
{
	(void)arg;
	/* nobody will ever send to this port */
	lwkt_waitport(&curthread->td_msgport, NULL);
	printf("waiter: woken?\n");
}

int
main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	uthread_init();
	printf("caps_fork_vcpu %d\n", caps_fork_vcpu());
	lwkt_create(waiter, NULL, NULL, NULL, 0, 1, "waiter");
	/* main waits for the waiter, which waits forever */
	lwkt_deschedule_self();
	lwkt_switch();
	printf("main resumed?\n");
	return (0);
}
