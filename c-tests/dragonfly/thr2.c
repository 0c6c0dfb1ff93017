/*
 * thr2 -- LWKT context switch benchmark: two threads on one cpu hand
 * the cpu to each other a million times each.  Run it under time(1).
 *
 * Our program, written for libcaps for Linux from the description of
 * DragonFly BSD's test/caps/thr2.c in the libcaps spec (section 8.3);
 * not a copy of DragonFly's file.  It includes only <stdio.h> and
 * <libcaps/defs.h>, as the original did.
 *
 * The second thread ends the process with exit(0), so main is normally
 * never run again.
 */
#include <stdio.h>
#include <libcaps/defs.h>

#define NSWITCH		1000000

static void	switcher(void *);

int
main(int argc, char **argv)
{
	uthread_init();
	lwkt_create(switcher, (void *)1, NULL, NULL, 0, -1, "thread1");
	lwkt_create(switcher, (void *)2, NULL, NULL, 0, -1, "thread2");
	lwkt_switch();
	printf("Main Exiting\n");
	exit(1);
}

/*
 * Both threads run this; arg says which one it is.
 */
static void
switcher(void *arg)
{
	int which = (int)(long)arg;
	int n;

	for (n = 0; n < NSWITCH; ++n)
		lwkt_switch();
	printf("done%d\n", which);
	if (which == 2)
		exit(0);
}
