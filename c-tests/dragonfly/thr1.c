/*
 * thr1 -- DragonFly BSD's test/caps/thr1.c (spec 8.2) as written: two
 * threads that print and exit; main switches away and is resumed by the
 * idle loop once both are gone. Do not edit (see README.md).
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
	td = curthread;
	printf("mainthread %p crit_count %d nest %d mp_lock %d\n",
	    td, td->td_pri / TDPRI_CRIT, td->td_mpcount, mp_lock);
	lwkt_create(thread1, NULL, &td1, NULL, 0, -1, "thread1");
	lwkt_create(thread2, NULL, &td2, NULL, 0, -1, "thread2");
	printf("thread #1 %p #2 %p\n", td1, td2);
	printf("switching away from main (should come back before exit)\n");
	lwkt_switch();
	printf("Switched back to main, main Exiting\n");
	exit(1);
}

void
thread1(void *data)
{
	printf("thread1 running\n");
	printf("thread1 exiting\n");
}

void
thread2(void *data)
{
	printf("thread2 running\n");
	printf("thread2 exiting\n");
}
