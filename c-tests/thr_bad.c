/*
 * Bad input is diagnosed, not a hang or silent corruption. The first
 * argument picks the case; each one must end with a one-line diagnostic
 * on stderr and abort():
 *
 *   crit-switch   lwkt_switch() inside a critical section
 *   crit-block    lwkt_block() inside a critical section
 *   crit-negative crit_exit() without crit_enter()
 *   idle-exit     the idle thread calling lwkt_exit()
 *   foreign-port  waiting on a port owned by another thread
 *   deadlock      every thread blocked, nothing can wake them
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

static lwkt_wait wq;

static void
idle_release(struct thread *td)
{
	(void)td;
	lwkt_exit();
}

static void
wait_on_main_port(void *arg)
{
	lwkt_waitport((lwkt_port_t)arg, NULL);
}

static void
sleep_forever(void *arg)
{
	int gen = wq.wa_gen;

	(void)arg;
	lwkt_block(&wq, "forever", &gen);
}

int
main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "";
	int gen = 0;

	uthread_init();
	lwkt_wait_init(&wq);
	if (strcmp(what, "crit-switch") == 0) {
		crit_enter();
		lwkt_switch();
	} else if (strcmp(what, "crit-block") == 0) {
		crit_enter();
		lwkt_block(&wq, "crit", &gen);
	} else if (strcmp(what, "crit-negative") == 0) {
		crit_exit();
	} else if (strcmp(what, "idle-exit") == 0) {
		mycpu->gd_idlethread.td_release = idle_release;
		lwkt_deschedule_self();
		lwkt_switch();
	} else if (strcmp(what, "foreign-port") == 0) {
		lwkt_create(wait_on_main_port, &curthread->td_msgport, NULL,
		    NULL, 0, -1, "intruder");
		lwkt_deschedule_self();
		lwkt_switch();
	} else if (strcmp(what, "deadlock") == 0) {
		lwkt_create(sleep_forever, NULL, NULL, NULL, 0, -1, "sleeper");
		lwkt_waitport(&curthread->td_msgport, NULL);
	} else {
		fprintf(stderr, "usage: thr_bad case\n");
		return (2);
	}
	printf("not reached\n");
	return (0);
}
