/*
 * IPIs and messages between two virtual cpus, for the per-pair IPI rings:
 *
 * 1. Order across a full ring. A thread on cpu 1 keeps its cpu busy (no
 *    scheduling point, so no IPI runs there) while the sender on cpu 0
 *    queues BURST numbered IPIs, more than a ring holds; then cpu 1 goes
 *    idle and the sender queues the rest while cpu 1 runs them (slowly at
 *    first). Every IPI must run once, in the order sent.
 * 2. No lost wakeup. A lwkt_domsg ping-pong in which either side now and
 *    then pauses (nanosleep, which blocks the whole cpu) for 0-80 us, so
 *    that the other cpu's idle spin ends around the time a message
 *    comes, sometimes before and sometimes after, and it goes to sleep.
 *    Every reply must come (an alarm ends a hung run).
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NIPI		200000
#define BURST		5000
#define ROUNDS		20000
#define CMD_PING	1
#define CMD_QUIT	2

static int vcpu;
static atomic_int busy_go, ipi_done;
static long ipi_next, ipi_bad;
static thread_t server_td;
static long served;

/* IPI on cpu 1: check that `arg` is the next number. */
static void
record(void *arg)
{
	volatile int spin;

	if ((intptr_t)arg != ipi_next)
		ipi_bad++;
	ipi_next++;
	/*
	 * The first entries run slowly, so that the sender keeps queueing
	 * (into a ring with room again, or behind what waits in the shared
	 * queue) while cpu 1 works through the burst.
	 */
	if (ipi_next < 4 * BURST)
		for (spin = 0; spin < 200; ++spin)
			;
}

static void
last(void *arg)
{
	(void)arg;
	atomic_store(&ipi_done, 1);
}

static void
busy(void *arg)
{
	(void)arg;
	rel_mplock();
	while (!atomic_load(&busy_go))
		;
}

static void
pause_us(unsigned us)
{
	struct timespec ts = { 0, (long)us * 1000 };

	nanosleep(&ts, NULL);
}

static void
sender(void *arg)
{
	thread_t b;
	long i;

	(void)arg;
	rel_mplock();
	lwkt_create(busy, NULL, &b, NULL, TDF_STOPREQ, vcpu, "busy");
	b->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(b);
	/* Let cpu 1 start the busy thread before the burst. */
	pause_us(20000);
	for (i = 0; i < BURST; ++i)
		lwkt_send_ipiq(vcpu, record, (void *)(intptr_t)i);
	atomic_store(&busy_go, 1);
	for (; i < NIPI; ++i)
		lwkt_send_ipiq(vcpu, record, (void *)(intptr_t)i);
	lwkt_send_ipiq(vcpu, last, NULL);
	while (!atomic_load(&ipi_done))
		;
	printf("ipi: %ld run, %ld out of order\n", ipi_next, ipi_bad);
}

static void
server(void *arg)
{
	lwkt_msg_t msg;
	unsigned seed = 7;
	int cmd;

	(void)arg;
	rel_mplock();
	do {
		msg = lwkt_waitport(&curthread->td_msgport, NULL);
		cmd = msg->ms_cmd;
		seed = seed * 1103515245 + 12345;
		if ((seed >> 16) % 16 == 0)
			pause_us((seed >> 8) % 80);
		msg->u.ms_result = 3 * msg->u.ms_result + 1;
		served++;
		lwkt_replymsg(msg, 0);
	} while (cmd != CMD_QUIT);
}

static void
client(void *arg)
{
	struct lwkt_msg msg;
	unsigned seed = 11;
	long bad = 0;
	int i;

	(void)arg;
	rel_mplock();
	lwkt_initmsg(&msg, &curthread->td_msgport, CMD_PING);
	for (i = 0; i < ROUNDS; ++i) {
		seed = seed * 1103515245 + 12345;
		if ((seed >> 16) % 16 == 0)
			pause_us((seed >> 8) % 80);
		msg.u.ms_result = i;
		lwkt_domsg(&server_td->td_msgport, &msg);
		if (msg.u.ms_result != 3 * i + 1)
			bad++;
	}
	msg.ms_cmd = CMD_QUIT;
	lwkt_domsg(&server_td->td_msgport, &msg);
	printf("domsg: %d round trips with pauses, %ld bad, %ld served\n",
	    ROUNDS, bad, served);
}

static void
run_on_cpu0(void (*func)(void *))
{
	thread_t td;

	lwkt_create(func, NULL, &td, NULL, TDF_STOPREQ, -1, "test");
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(td);
	lwkt_deschedule_self();
	lwkt_switch();
}

int
main(void)
{
	thread_t c;

	alarm(120);
	setvbuf(stdout, NULL, _IONBF, 0);
	uthread_init();
	vcpu = caps_fork_vcpu();
	run_on_cpu0(sender);
	lwkt_create(server, NULL, &server_td, NULL, TDF_STOPREQ, vcpu, "server");
	lwkt_create(client, NULL, &c, NULL, TDF_STOPREQ, -1, "client");
	server_td->td_flags &= ~TDF_VERBOSE;
	c->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(server_td);
	lwkt_schedule(c);
	lwkt_deschedule_self();
	lwkt_switch();
	return (0);
}
