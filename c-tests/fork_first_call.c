/*
 * fork() while another thread makes the process's very first call into
 * the library: the child must be able to use the library.
 *
 *   fork_first_call slab|lwkt [ROUNDS]
 *
 * Each round is a fresh process (forked from this driver, which never
 * calls the library) in which a new pthread makes the first call
 * (slab_malloc, or an LWKT call that sets up cpu 0) while the main thread
 * forks. The grandchild then uses the library (allocates and frees; or
 * creates LWKT threads, runs them and returns to main) and exits 0. A
 * grandchild that is not done within 5 s is killed and counted as a hang;
 * one that fails otherwise is counted as a failure.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <libcaps/slaballoc.h>
#include <sys/thread.h>
#include <sys/thread2.h>
#include <sys/wait.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

MALLOC_DEFINE(M_FORKTEST, "forktest", "fork during first call");

#define DEADLINE_MS	5000

static int use_lwkt;
static volatile int go;
static int ran;

static void
worker(void *arg)
{
	++*(int *)arg;
}

/* What the first thread does: the library's first call in the process. */
static void *
first_call(void *arg)
{
	(void)arg;
	go = 1;
	if (use_lwkt) {
		uthread_init();
	} else {
		slab_free(slab_malloc(100, M_FORKTEST, M_WAITOK), M_FORKTEST);
	}
	return (NULL);
}

/* The grandchild: use the library and exit 0. */
static int
use_library(void)
{
	int i;

	if (use_lwkt) {
		thread_t td;

		for (i = 0; i < 3; ++i) {
			lwkt_create(worker, &ran, &td, NULL, TDF_STOPREQ, -1,
			    "w%d", i);
			td->td_flags &= ~TDF_VERBOSE;
			lwkt_schedule(td);
		}
		lwkt_deschedule_self();
		lwkt_switch();
		return (ran == 3 ? 0 : 1);
	}
	for (i = 0; i < 1000; ++i) {
		void *p = slab_malloc((size_t)(i % 200) * 16 + 8, M_FORKTEST,
		    M_WAITOK);

		memset(p, i, 8);
		slab_free(p, M_FORKTEST);
	}
	return (0);
}

/* Wait for pid at most `limit` ms: 0 ok, 1 failed, 2 hung (killed). */
static int
wait_deadline(pid_t pid, int limit)
{
	int status, ms;

	for (ms = 0; ms < limit; ++ms) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)	/* a round's own status is 0, 1 or 2 */
			return (WIFEXITED(status) && WEXITSTATUS(status) <= 2 ?
			    WEXITSTATUS(status) : 1);
		if (r < 0)
			return (1);
		usleep(1000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return (2);
}

/* One round, in a fresh process: exit status as wait_deadline's. */
static int
round_process(void)
{
	pthread_t t;
	pid_t pid;
	int r;

	if (pthread_create(&t, NULL, first_call, NULL) != 0)
		return (1);
	while (!go)
		;
	pid = fork();
	if (pid == 0)
		_exit(use_library());
	if (pid < 0)
		return (1);
	r = wait_deadline(pid, DEADLINE_MS);
	pthread_join(t, NULL);
	return (r);
}

int
main(int ac, char **av)
{
	int rounds = ac > 2 ? atoi(av[2]) : 400;
	int i, hangs = 0, failures = 0;

	if (ac < 2 || (strcmp(av[1], "slab") != 0 && strcmp(av[1], "lwkt") != 0)) {
		fprintf(stderr, "usage: fork_first_call slab|lwkt [ROUNDS]\n");
		return (2);
	}
	use_lwkt = strcmp(av[1], "lwkt") == 0;
	for (i = 0; i < rounds && hangs < 5; ++i) {
		pid_t pid;
		int r;

		fflush(stdout);
		pid = fork();
		if (pid == 0)
			_exit(round_process());
		/* Longer: the round kills its own hung grandchild first. */
		r = wait_deadline(pid, 2 * DEADLINE_MS);
		if (r == 1)
			++failures;
		else if (r != 0)
			++hangs;
	}
	printf("%s: %d rounds, %d hangs, %d failures%s\n", av[1], i, hangs,
	    failures, hangs >= 5 ? " (stopped early)" : "");
	return (0);
}
