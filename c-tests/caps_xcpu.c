/*
 * caps_xcpu -- one CAPS client port used by threads of two cpus at once.
 *
 *	caps_xcpu NAME ROUNDS
 *
 * Connects to NAME (a caps_echo server) from main on cpu 0, starts a
 * second virtual cpu, and runs four workers that each make ROUNDS
 * lwkt_domsg() calls on the one client port: workers 0 and 1 on cpu 0,
 * workers 2 and 3 on the new cpu, which release the MP lock first so
 * that the two cpus really run in parallel. Every reply is checked.
 * Each worker prints how its calls ended:
 *
 *	worker W cpu C: OK ok, XD EXDEV, BAD bad
 *
 * then main closes the port and prints "done".
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

#define NWORKERS	4
#define CMD_ECHO	1

struct echomsg {
	struct lwkt_msg	msg;
	int		payload[16];
};

struct worker {
	int	id;
	int	cpu;
	long	ok;
	long	exdev;
	long	bad;
};

static caps_port_t port;
static long rounds;
static int workers_left = NWORKERS;

static void
worker(void *arg)
{
	struct worker *w = arg;
	struct echomsg m;
	long i;
	int j, error;

	if (mycpu->gd_cpuid != 0)
		rel_mplock();
	w->cpu = mycpu->gd_cpuid;
	memset(&m, 0, sizeof(m));
	for (i = 0; i < rounds; ++i) {
		int tag = w->id * 1000000 + (int)i;

		lwkt_initmsg(&m.msg, &curthread->td_msgport, CMD_ECHO);
		m.msg.u.ms_result = tag;
		for (j = 0; j < 16; ++j)
			m.payload[j] = tag + j;
		m.msg.ms_msgsize = m.msg.ms_maxsize = sizeof(m);
		error = lwkt_domsg(&port->lport, &m.msg);
		if (error == EXDEV) {
			++w->exdev;
			continue;
		}
		if (error != CMD_ECHO || ~m.msg.u.ms_result != tag) {
			if (w->bad++ < 3)
				printf("worker %d cpu %d: call %ld error %d\n",
				    w->id, w->cpu, i, error);
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
	__atomic_sub_fetch(&workers_left, 1, __ATOMIC_SEQ_CST);
}

int
main(int ac, char **av)
{
	struct worker w[NWORKERS];
	int cpu, i;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (ac != 3) {
		fprintf(stderr, "usage: caps_xcpu NAME ROUNDS\n");
		return (64);
	}
	rounds = strtol(av[2], NULL, 0);
	port = caps_client(av[1], (uid_t)-1, 0);
	if (port == NULL) {
		printf("caps_client: %s\n", strerror(errno));
		return (1);
	}
	cpu = caps_fork_vcpu();
	for (i = 0; i < NWORKERS; ++i) {
		w[i].id = i;
		w[i].cpu = -1;
		w[i].ok = w[i].exdev = w[i].bad = 0;
		lwkt_create(worker, &w[i], NULL, NULL, 0, i < 2 ? -1 : cpu,
		    "worker%d", i);
	}
	while (__atomic_load_n(&workers_left, __ATOMIC_SEQ_CST) > 0)
		lwkt_yield();
	for (i = 0; i < NWORKERS; ++i)
		printf("worker %d cpu %d: %ld ok, %ld EXDEV, %ld bad\n", w[i].id,
		    w[i].cpu, w[i].ok, w[i].exdev, w[i].bad);
	caps_close(port);
	printf("done\n");
	return (0);
}
