/*
 * caps_threads -- LWKT threads meet CAPS: eight threads share one client
 * connection, each blocking only itself while it waits for its replies
 * (lwkt_domsg, lwkt_beginmsg + lwkt_waitmsg, lwkt_sendmsg + lwkt_waitport
 * on its own reply port), while another thread keeps running.
 *
 *	caps_threads NAME ROUNDS	(against "caps_echo -s NAME")
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <sys/caps.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NWORKERS	8
#define CMD_ECHO	1

struct echomsg {
	struct lwkt_msg	msg;
	int		payload[16];
};

struct worker {
	int	id;
	long	ok;
	long	bad;
};

static caps_port_t port;
static long rounds;
static int workers_left = NWORKERS;
static long ticks;

static void
worker(void *arg)
{
	struct worker *w = arg;
	struct lwkt_port rport;
	struct echomsg m;
	long i;
	int j, error;

	memset(&m, 0, sizeof(m));	/* every byte sent is defined */
	lwkt_initport(&rport, curthread);
	for (i = 0; i < rounds; ++i) {
		int tag = w->id * 1000000 + (int)i;

		lwkt_initmsg(&m.msg, &rport, CMD_ECHO);
		m.msg.u.ms_result = tag;
		for (j = 0; j < 16; ++j)
			m.payload[j] = tag + j;
		m.msg.ms_msgsize = m.msg.ms_maxsize = sizeof(m);
		switch (w->id % 3) {
		case 0:
			error = lwkt_domsg(&port->lport, &m.msg);
			break;
		case 1:
			error = lwkt_beginmsg(&port->lport, &m.msg);
			if (error == EASYNC)
				error = lwkt_waitmsg(&m.msg);
			break;
		default:
			lwkt_sendmsg(&port->lport, &m.msg);
			if (lwkt_waitport(&rport, NULL) != &m.msg)
				error = -1;
			else
				error = m.msg.ms_error;
			break;
		}
		if (error != CMD_ECHO || ~m.msg.u.ms_result != tag) {
			++w->bad;
			continue;
		}
		for (j = 0; j < 16; ++j) {
			if (m.payload[j] != ~(tag + j))
				break;
		}
		if (j == 16)
			++w->ok;
		else
			++w->bad;
	}
	--workers_left;
}

/*
 * Runs while the workers wait: it never blocks, it only yields until they
 * are done. The replies they wait for must still be read meanwhile.
 */
static void
ticker(void *arg)
{
	(void)arg;
	while (workers_left > 0) {
		++ticks;
		lwkt_yield();
	}
}

int
main(int ac, char **av)
{
	struct worker w[NWORKERS];
	int i, failed = 0;

	if (ac != 3) {
		fprintf(stderr, "usage: caps_threads NAME ROUNDS\n");
		return (64);
	}
	rounds = strtol(av[2], NULL, 0);
	port = caps_client(av[1], (uid_t)-1, 0);
	if (port == NULL) {
		printf("caps_client: %s\n", strerror(errno));
		return (1);
	}
	for (i = 0; i < NWORKERS; ++i) {
		w[i].id = i;
		w[i].ok = w[i].bad = 0;
		lwkt_create(worker, &w[i], NULL, NULL, 0, -1, "worker%d", i);
	}
	lwkt_create(ticker, NULL, NULL, NULL, 0, -1, "ticker");

	/* Come back when every thread has exited. */
	lwkt_deschedule_self();
	lwkt_switch();

	for (i = 0; i < NWORKERS; ++i) {
		printf("worker %d (%s): %ld ok, %ld bad\n", i,
		    i % 3 == 0 ? "domsg" : i % 3 == 1 ? "beginmsg+waitmsg" : "sendmsg+waitport",
		    w[i].ok, w[i].bad);
		failed |= w[i].ok != rounds;
	}
	printf("ticker %s while the workers waited, workers left %d\n",
	    ticks >= rounds ? "kept running" : "did NOT keep running", workers_left);
	caps_close(port);
	return (failed);
}
