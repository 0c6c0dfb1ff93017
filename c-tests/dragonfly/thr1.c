/*
 * thr1 -- create two LWKT threads, switch to them, come back.
 *
 * Our program, written for libcaps for Linux from the description of
 * DragonFly BSD's test/caps/thr1.c in the libcaps spec (section 8.2);
 * not a copy of DragonFly's file.  Like the original it includes only
 * <stdio.h> and the umbrella header, and relies on the latter for
 * everything else (lwkt_create(), curthread, mp_lock, exit()).
 *
 * Expected: both threads run to their end before the idle loop hands
 * the cpu back to main, which then exits with status 1.
 */
#include <stdio.h>
#include <libcaps/defs.h>

static void	first_thread(void *);
static void	second_thread(void *);

int
main(int argc, char **argv)
{
	thread_t t1, t2;
	thread_t self;

	uthread_init();
	self = curthread;
	printf("mainthread %p crit_count %d nest %d mp_lock %d\n",
	    self, self->td_pri / TDPRI_CRIT, self->td_mpcount, mp_lock);

	lwkt_create(first_thread, NULL, &t1, NULL, 0, -1, "thread1");
	lwkt_create(second_thread, NULL, &t2, NULL, 0, -1, "thread2");
	printf("thread #1 %p #2 %p\n", t1, t2);

	printf("switching away from main (should come back before exit)\n");
	lwkt_switch();

	printf("Switched back to main, main Exiting\n");
	exit(1);
}

static void
first_thread(void *unused)
{
	printf("thread1 running\n");
	printf("thread1 exiting\n");
}

static void
second_thread(void *unused)
{
	printf("thread2 running\n");
	printf("thread2 exiting\n");
}
