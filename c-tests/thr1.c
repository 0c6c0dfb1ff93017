/*
 * thr1 -- basic thread creation and exit, after DragonFly's
 * /usr/src/test/caps/thr1.c (V3): main creates two threads and switches
 * away; when both have exited the idle loop resumes main.
 *
 * Addresses differ from run to run, so everything is printed into a
 * memory stream (the library's "kthread ... has exited" lines too, since
 * it prints on stdout) and the known thread addresses are replaced by
 * names before the text goes to the real stdout.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FILE *realout;
static char *capbuf;
static size_t caplen;

static void
thread1(void *arg)
{
	(void)arg;
	printf("thread1 running\n");
	lwkt_switch();
	printf("thread1 exiting\n");
}

static void
thread2(void *arg)
{
	(void)arg;
	printf("thread2 running\n");
	lwkt_switch();
	printf("thread2 exiting\n");
}

/* Print capbuf on the real stdout with each address replaced by a name. */
static void
print_named(void *const *ptrs, const char *const *names, int n)
{
	char addr[8][32];
	const char *p = capbuf;
	int i;

	for (i = 0; i < n; ++i)
		snprintf(addr[i], sizeof(addr[i]), "%p", ptrs[i]);
	while (*p != '\0') {
		for (i = 0; i < n; ++i) {
			size_t len = strlen(addr[i]);
			if (strncmp(p, addr[i], len) == 0) {
				fputs(names[i], realout);
				p += len;
				break;
			}
		}
		if (i == n)
			fputc(*p++, realout);
	}
}

int
main(void)
{
	thread_t td1, td2, maintd;

	realout = stdout;
	stdout = open_memstream(&capbuf, &caplen);

	uthread_init();
	maintd = curthread;
	printf("mainthread %p crit_count %d nest %d mp_lock %d\n",
	    (void *)curthread, curthread->td_pri / TDPRI_CRIT,
	    curthread->td_mpcount, mp_lock);
	lwkt_create(thread1, NULL, &td1, NULL, 0, -1, "thread1");
	lwkt_create(thread2, NULL, &td2, NULL, 0, -1, "thread2");
	printf("thread #1 %p #2 %p\n", (void *)td1, (void *)td2);
	printf("switching away from main (should come back before exit)\n");
	lwkt_switch();
	printf("Switched back to main, main Exiting\n");
	if (curthread != maintd)
		printf("curthread is not the main thread!\n");

	fclose(stdout);
	stdout = realout;
	{
		void *ptrs[3] = { maintd, td1, td2 };
		const char *names[3] = { "MAIN", "TD1", "TD2" };
		print_named(ptrs, names, 3);
	}
	free(capbuf);
	exit(1);
}
