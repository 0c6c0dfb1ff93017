/*
 * parked.h -- threads parked on message ports of their own, and what
 * /proc/self says they cost; for c-tests/thr_parked.c (and thr_nomem.c)
 * and benches/park_bench.c. Each thread's port, and the message that will
 * wake it, live on its own stack.
 */
#ifndef PARKED_H
#define PARKED_H

#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARKED_UNUSED	__attribute__((__unused__))

struct parked {
	struct lwkt_port port;
	struct lwkt_msg msg;
};

static struct parked **parked PARKED_UNUSED;
static long nparked PARKED_UNUSED, nwoken PARKED_UNUSED;

static void PARKED_UNUSED
sleeper(void *arg)
{
	struct parked p;

	lwkt_initport(&p.port, curthread);
	lwkt_initmsg(&p.msg, &p.port, 0);
	parked[(long)arg] = &p;
	++nparked;
	if (lwkt_waitport(&p.port, NULL) != &p.msg)
		printf("sleeper %ld: woken by a stranger\n", (long)arg);
	++nwoken;
}

/*
 * Create n sleepers on the current cpu and let them park (a thousand at
 * a time). 0, or the error of the lwkt_create that failed (printed).
 */
static int PARKED_UNUSED
park(long n)
{
	long i;

	parked = calloc(n, sizeof(*parked));
	if (parked == NULL)
		return (ENOMEM);
	for (i = 0; i < n; ++i) {
		thread_t td;
		int error;

		error = lwkt_create(sleeper, (void *)i, &td, NULL, 0, -1,
		    "sleeper%ld", i);
		if (error != 0) {
			printf("lwkt_create of thread %ld: %s\n", i,
			    strerror(error));
			return (error);
		}
		td->td_flags &= ~TDF_VERBOSE;
		if (i % 1000 == 999)
			lwkt_yield();	/* the last thousand run and park */
	}
	lwkt_yield();
	return (0);
}

/*
 * Send each of the n parked sleepers its message, wait until all have
 * exited, then block once so that the idle thread frees what they left.
 */
static void PARKED_UNUSED
wake_all(long n)
{
	long i;

	for (i = 0; i < n; ++i)
		lwkt_sendmsg(&parked[i]->port, &parked[i]->msg);
	while (nwoken < n)
		lwkt_yield();
	lwkt_deschedule_self();
	lwkt_switch();
}

/* A "Name:  N kB" field of /proc/self/status (VmRSS, VmSize) in KiB; -1
 * if there is none. */
static long PARKED_UNUSED
status_kib(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	size_t len = strlen(field);
	char line[256];
	long kib = -1;

	if (f == NULL)
		return (-1);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, len) == 0 && line[len] == ':')
			kib = atol(line + len + 1);
	fclose(f);
	return (kib);
}

/* Lines of a file (of /proc/self/maps: the process's mappings); -1 if it
 * cannot be read. */
static long PARKED_UNUSED
count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	long n = 0;
	int c;

	if (f == NULL)
		return (-1);
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return (n);
}

#endif
