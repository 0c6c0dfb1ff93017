/*
 * Idle virtual cpus use no CPU time. Three vcpus are forked; after a
 * burst of cross-cpu messages (so that the idle loops have spun and grown
 * their spin budget), a thread on cpu 1 measures the process's CPU time
 * (user + system, getrusage) over SECONDS of nanosleep while cpus 0, 2
 * and 3 have nothing to run. Prints the figure in milliseconds.
 *
 * Usage: vcpu_idle [seconds]
 */
#include <sys/types.h>
#include <sys/resource.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BURST	20000

static thread_t server_td;
static double seconds = 2.0, cpu_ms;

static double
cputime_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ((ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
	    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3);
}

static void
server(void *arg)
{
	lwkt_msg_t msg;
	int last;

	(void)arg;
	rel_mplock();
	for (;;) {
		msg = lwkt_waitport(&curthread->td_msgport, NULL);
		/* read before replying: the reply gives the message back */
		last = msg->ms_cmd == 2;
		lwkt_replymsg(msg, 0);
		if (last)
			break;
	}
}

static void
client(void *arg)
{
	struct lwkt_msg msg;
	int i;

	(void)arg;
	rel_mplock();
	lwkt_initmsg(&msg, &curthread->td_msgport, 1);
	for (i = 0; i < BURST; ++i)
		lwkt_domsg(&server_td->td_msgport, &msg);
	msg.ms_cmd = 2;
	lwkt_domsg(&server_td->td_msgport, &msg);
}

static void
measure(void *arg)
{
	struct timespec ts;
	double t0;

	(void)arg;
	ts.tv_sec = (time_t)seconds;
	ts.tv_nsec = (long)((seconds - ts.tv_sec) * 1e9);
	t0 = cputime_ms();
	nanosleep(&ts, NULL);
	cpu_ms = cputime_ms() - t0;
}

static void
spawn(void (*func)(void *), int cpu, thread_t *ptd)
{
	thread_t td;

	lwkt_create(func, NULL, &td, NULL, TDF_STOPREQ, cpu, "t");
	td->td_flags &= ~TDF_VERBOSE;
	if (ptd != NULL)
		*ptd = td;
	lwkt_schedule(td);
}

int
main(int argc, char **argv)
{
	int i;

	if (argc > 1)
		seconds = atof(argv[1]);
	uthread_init();
	for (i = 0; i < 3; ++i)
		caps_fork_vcpu();
	spawn(server, 2, &server_td);
	spawn(client, 3, NULL);
	lwkt_deschedule_self();
	lwkt_switch();
	printf("burst of %d cross-cpu round trips done\n", BURST);
	spawn(measure, 1, NULL);
	lwkt_deschedule_self();
	lwkt_switch();
	printf("ncpus %d, idle for %.1f s: process cpu time %.1f ms\n", ncpus,
	    seconds, cpu_ms);
	return (0);
}
