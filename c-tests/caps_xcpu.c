/*
 * caps_xcpu -- one CAPS client port used by threads of two cpus at once.
 *
 *	caps_xcpu NAME ROUNDS
 *	caps_xcpu -m NAME
 *	caps_xcpu -s NAME COUNT
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
 *
 * -m: misuse from the other cpu. A thread there calls
 * caps_client_waitreply() and caps_close() on main's port, sends a
 * message whose reply port is the client port itself, and waits on a
 * service port main made (service NAME_x); each is refused with EXDEV
 * (and a log line), after which main still uses and closes the ports.
 *
 * -s: serve NAME (as caps_echo does) for COUNT requests, receiving them
 * on cpu 0 and forwarding each to a thread of the other cpu, which
 * complements it and replies to it from there.
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

static int misuse_done;
static caps_port_t service;

static void
misuse(void *arg)
{
	struct echomsg m;
	void *r;
	int error;

	(void)arg;
	rel_mplock();
	errno = 0;
	r = caps_client_waitreply(port, NULL);
	printf("waitreply from cpu %d: %s, %s\n", mycpu->gd_cpuid,
	    r == NULL ? "NULL" : "a message", strerror(errno));
	errno = 0;
	caps_close(port);
	printf("close from cpu %d: %s\n", mycpu->gd_cpuid, strerror(errno));
	memset(&m, 0, sizeof(m));
	lwkt_initmsg(&m.msg, &port->lport, CMD_ECHO);
	m.msg.ms_msgsize = m.msg.ms_maxsize = sizeof(m);
	error = lwkt_domsg(&port->lport, &m.msg);
	printf("domsg replying to the client port from cpu %d: %s\n",
	    mycpu->gd_cpuid, strerror(error));
	errno = 0;
	r = lwkt_waitport(&service->lport, NULL);
	printf("waitport on the service from cpu %d: %s, %s\n",
	    mycpu->gd_cpuid, r == NULL ? "NULL" : "a message",
	    strerror(errno));
	__atomic_store_n(&misuse_done, 1, __ATOMIC_SEQ_CST);
}

static int
misuse_main(const char *name)
{
	struct echomsg m;
	char sname[64];
	int error;

	port = caps_client(name, (uid_t)-1, 0);
	snprintf(sname, sizeof(sname), "%s_x", name);
	service = caps_service(sname, (gid_t)-1, 0600, CAPS_USER);
	if (port == NULL || service == NULL) {
		printf("caps_client/caps_service: %s\n", strerror(errno));
		return (1);
	}
	lwkt_create(misuse, NULL, NULL, NULL, 0, caps_fork_vcpu(), "misuse");
	while (!__atomic_load_n(&misuse_done, __ATOMIC_SEQ_CST))
		lwkt_yield();
	memset(&m, 0, sizeof(m));
	lwkt_initmsg(&m.msg, &curthread->td_msgport, CMD_ECHO);
	m.msg.u.ms_result = 7;
	m.msg.ms_msgsize = m.msg.ms_maxsize = sizeof(m);
	error = lwkt_domsg(&port->lport, &m.msg);
	printf("domsg on cpu 0 after: error %d result %d\n", error,
	    ~m.msg.u.ms_result);
	caps_close(port);
	caps_close(service);
	printf("done\n");
	return (0);
}

static struct lwkt_port replier_port;
static long replied;

static void
replier(void *arg)
{
	struct lwkt_msg *msg;
	unsigned char *p;
	size_t i;

	(void)arg;
	rel_mplock();
	lwkt_initport(&replier_port, curthread);
	__atomic_store_n(&replied, 0, __ATOMIC_SEQ_CST);
	for (;;) {
		msg = lwkt_waitport(&replier_port, NULL);
		p = (unsigned char *)(msg + 1);
		for (i = sizeof(*msg); i < (size_t)msg->ms_msgsize; ++i)
			p[i - sizeof(*msg)] = ~p[i - sizeof(*msg)];
		msg->u.ms_result = ~msg->u.ms_result;
		lwkt_replymsg(msg, msg->ms_cmd);
		__atomic_add_fetch(&replied, 1, __ATOMIC_SEQ_CST);
	}
}

static int
serve_main(const char *name, long count)
{
	struct lwkt_msg *msg;
	long n;

	service = caps_service(name, (gid_t)-1, 0600, CAPS_USER);
	if (service == NULL) {
		printf("caps_service: %s\n", strerror(errno));
		return (1);
	}
	replied = -1;
	lwkt_create(replier, NULL, NULL, NULL, 0, caps_fork_vcpu(), "replier");
	while (__atomic_load_n(&replied, __ATOMIC_SEQ_CST) < 0)
		lwkt_yield();
	for (n = 0; n < count; ++n) {
		msg = lwkt_waitport(&service->lport, NULL);
		if (msg == NULL) {
			printf("waitport: NULL\n");
			return (1);
		}
		lwkt_forwardmsg(&replier_port, msg);
	}
	while (__atomic_load_n(&replied, __ATOMIC_SEQ_CST) < count)
		lwkt_yield();
	caps_close(service);
	printf("served %ld from cpu 1\n", count);
	return (0);
}

int
main(int ac, char **av)
{
	struct worker w[NWORKERS];
	int cpu, i;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (ac == 3 && strcmp(av[1], "-m") == 0)
		return (misuse_main(av[2]));
	if (ac == 4 && strcmp(av[1], "-s") == 0)
		return (serve_main(av[2], strtol(av[3], NULL, 0)));
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
