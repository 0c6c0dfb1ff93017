/*
 * doorbell_bench -- what one wakeup of a sleeping process costs, the way a
 * CAPS shared-memory connection rings it today against a futex word in
 * shared memory (an idea, not used: see docs/benchmarks-history.md,
 * "Issue 17 point 2: where the time goes").
 *
 *	doorbell_bench [ROUNDS]
 *
 * Two processes pass a turn back and forth, ROUNDS times each way
 * (default 100000), and sleep between turns (no spinning), on whatever
 * cores the machine's scheduler picks:
 *
 *	socket	the doorbell of docs/wire-protocol.md: 48 bytes sent on a
 *		Unix stream socket; the sleeper waits in epoll_wait, then
 *		reads them (recv), as a CAPS cpu does
 *	futex	a word in shared memory: the waker stores 1 and calls
 *		FUTEX_WAKE; the sleeper swaps it to 0 and, if it was 0,
 *		calls FUTEX_WAIT
 *
 * Columns, per wakeup (two per round): wakeups per second; cpu time
 * (user + system, getrusage) of both processes, that is the cost of one
 * wakeup to the waker plus the sleeper; context switches (1.00: every
 * turn slept).
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"

struct board {
	_Atomic int	word[2];	/* futex: one per sleeper */
	double		cpu_us[2];	/* each side's cpu time */
	long		csw[2];		/* each side's context switches */
};

static struct board *board;
static long rounds = 100000;

static double
cpu_us(long *csw)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	*csw = ru.ru_nvcsw + ru.ru_nivcsw;
	return ((ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
	    ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* Side me (0 starts) over socket fd: ring, sleep until rung, in turn. */
static void
socket_side(int me, int fd)
{
	struct epoll_event ev, out;
	char bell[48];
	long i, cs0, cs1;
	double c0;
	int ep;

	memset(bell, 0, sizeof(bell));
	ep = epoll_create1(0);
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	c0 = cpu_us(&cs0);
	for (i = 0; i < rounds; ++i) {
		if (me == 0)
			send(fd, bell, sizeof(bell), MSG_DONTWAIT);
		while (epoll_wait(ep, &out, 1, -1) < 1)
			;
		if (readn(fd, bell, sizeof(bell)) != 0)
			_exit(1);
		if (me == 1)
			send(fd, bell, sizeof(bell), MSG_DONTWAIT);
	}
	board->cpu_us[me] = cpu_us(&cs1) - c0;
	board->csw[me] = cs1 - cs0;
}

static void
futex_wait_for(_Atomic int *w)
{
	while (atomic_exchange(w, 0) == 0)
		syscall(SYS_futex, w, FUTEX_WAIT, 0, NULL, NULL, 0);
}

static void
futex_ring(_Atomic int *w)
{
	atomic_store(w, 1);
	syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void
futex_side(int me)
{
	long i, cs0, cs1;
	double c0 = cpu_us(&cs0);

	for (i = 0; i < rounds; ++i) {
		if (me == 0) {
			futex_ring(&board->word[1]);
			futex_wait_for(&board->word[0]);
		} else {
			futex_wait_for(&board->word[1]);
			futex_ring(&board->word[0]);
		}
	}
	board->cpu_us[me] = cpu_us(&cs1) - c0;
	board->csw[me] = cs1 - cs0;
}

int
main(int ac, char **av)
{
	static const char *name[] = { "socket", "futex" };
	int k;

	if (ac > 1)
		rounds = strtol(av[1], NULL, 0);
	if (rounds < 1) {
		fprintf(stderr, "usage: doorbell_bench [ROUNDS]\n");
		return (1);
	}
	board = mmap(NULL, sizeof(*board), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (board == MAP_FAILED) {
		perror("mmap");
		return (1);
	}
	printf("two processes taking turns, sleeping between them; %ld rounds\n", rounds);
	printf("%-8s %10s %14s %10s\n", "doorbell", "wakeups/s", "cpu us/wakeup",
	    "cs/wakeup");
	for (k = 0; k < 2; ++k) {
		int sv[2];
		double t0;
		pid_t p;

		memset(board, 0, sizeof(*board));
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
			perror("socketpair");
			return (1);
		}
		t0 = now();
		p = xfork();
		if (p == 0) {
			if (k == 0)
				socket_side(1, sv[1]);
			else
				futex_side(1);
			_exit(0);
		}
		if (k == 0)
			socket_side(0, sv[0]);
		else
			futex_side(0);
		reap(p);
		printf("%-8s %10.0f %14.2f %10.2f\n", name[k], 2 * rounds / (now() - t0),
		    (board->cpu_us[0] + board->cpu_us[1]) / (2 * rounds),
		    (double)(board->csw[0] + board->csw[1]) / (2 * rounds));
		close(sv[0]);
		close(sv[1]);
	}
	return (0);
}
