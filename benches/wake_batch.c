/*
 * wake_batch -- what a CAPS service pays to wake a batch of sleeping
 * clients, one `send` per doorbell (what it does today) against all of a
 * batch's doorbells in one io_uring_enter (an idea, not used: see
 * docs/benchmarks-history.md, "Issue 17 point 2: what wake-up preemption costs").
 *
 *	wake_batch [K [BATCHES]]
 *
 * K processes (default 126, the batch a service answered at a time with
 * 128 clients) each sleep in epoll_wait on a Unix stream socket, then
 * read the 48-byte doorbell (recv) and work 3 us, as a CAPS client's cpu
 * does. The waker rings all K, BATCHES times (default 100), once all
 * have gone back to sleep; the modes take turns, twice each. Columns,
 * per wakeup, of the waker's ringing only:
 *
 *	cpu us		its cpu time (CLOCK_THREAD_CPUTIME_ID)
 *	wall us		the time the batch took, preemptions included
 *	preempted	its involuntary context switches (getrusage)
 *
 * With one `send` each, every woken client may take the waker's core at
 * the return of the system call that woke it; with io_uring only once
 * per batch. Nothing is pinned; `taskset -c 0 wake_batch` puts all on
 * one core (no wakeup then crosses to another core).
 */
#define _GNU_SOURCE
#include <linux/io_uring.h>
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

#define MAXK	512

struct board {
	atomic_long	asleep;		/* sleeps begun, all clients together */
	atomic_int	stop;
};

static struct board *board;
static int socks[MAXK][2];
static char bell[48];

/* A client: sleep, take the doorbell, work 3 us, again. */
static void
sleeper(int me)
{
	struct epoll_event ev = { .events = EPOLLIN }, got;
	char buf[64];
	int ep = epoll_create1(0);
	double t0;

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, socks[me][1], &ev) != 0)
		_exit(1);
	for (;;) {
		atomic_fetch_add(&board->asleep, 1);
		if (epoll_wait(ep, &got, 1, -1) < 0)
			continue;
		if (recv(socks[me][1], buf, sizeof(buf), 0) <= 0 ||
		    atomic_load(&board->stop))
			_exit(0);
		t0 = now_ns();
		while (now_ns() - t0 < 3000)
			;
	}
}

/* The submission side of an io_uring (completions are dropped unread). */
struct uring {
	int		fd;
	unsigned	*tail, *mask, *array, *cqhead, *cqtail;
	struct io_uring_sqe *sqes;
};

static int
uring_init(struct uring *u, unsigned entries)
{
	struct io_uring_params p;
	char *sq, *cq;

	memset(&p, 0, sizeof(p));
	u->fd = (int)syscall(__NR_io_uring_setup, entries, &p);
	if (u->fd < 0)
		return (-1);
	sq = mmap(NULL, p.sq_off.array + p.sq_entries * sizeof(unsigned),
	    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd, IORING_OFF_SQ_RING);
	cq = mmap(NULL, p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe),
	    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd, IORING_OFF_CQ_RING);
	u->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe),
	    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || u->sqes == MAP_FAILED)
		return (-1);
	u->tail = (unsigned *)(sq + p.sq_off.tail);
	u->mask = (unsigned *)(sq + p.sq_off.ring_mask);
	u->array = (unsigned *)(sq + p.sq_off.array);
	u->cqhead = (unsigned *)(cq + p.cq_off.head);
	u->cqtail = (unsigned *)(cq + p.cq_off.tail);
	return (0);
}

/* Ring the k doorbells: k sends, or (u != NULL) one io_uring_enter. */
static void
ring_all(int k, struct uring *u)
{
	unsigned t;
	int i;

	if (u == NULL) {
		for (i = 0; i < k; ++i)
			send(socks[i][0], bell, sizeof(bell), MSG_NOSIGNAL | MSG_DONTWAIT);
		return;
	}
	t = *u->tail;
	for (i = 0; i < k; ++i, ++t) {
		unsigned idx = t & *u->mask;
		struct io_uring_sqe *s = &u->sqes[idx];

		memset(s, 0, sizeof(*s));
		s->opcode = IORING_OP_SEND;
		s->fd = socks[i][0];
		s->addr = (unsigned long)bell;
		s->len = sizeof(bell);
		s->msg_flags = MSG_NOSIGNAL | MSG_DONTWAIT;
		u->array[idx] = idx;
	}
	atomic_store_explicit((_Atomic unsigned *)u->tail, t, memory_order_release);
	if (syscall(__NR_io_uring_enter, u->fd, k, 0, 0, NULL, 0) != k) {
		perror("wake_batch: io_uring_enter");
		exit(1);
	}
	atomic_store_explicit((_Atomic unsigned *)u->cqhead,
	    atomic_load_explicit((_Atomic unsigned *)u->cqtail, memory_order_acquire),
	    memory_order_release);
}

static double
thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (ts.tv_sec * 1e9 + ts.tv_nsec);
}

/* BATCHES rounds of k wakeups; `done` batches were rung before. */
static void
measure(int k, int batches, long *done, struct uring *u)
{
	double cpu = 0, wall = 0, c0, w0;
	struct rusage r0, r1;
	long preempted = 0;
	int b;

	for (b = 0; b < batches; ++b) {
		++*done;
		while (atomic_load(&board->asleep) < (long)k * *done)
			sched_yield();
		usleep(200);	/* into epoll_wait, all of them */
		getrusage(RUSAGE_THREAD, &r0);
		c0 = thread_cpu_ns();
		w0 = now_ns();
		ring_all(k, u);
		wall += now_ns() - w0;
		cpu += thread_cpu_ns() - c0;
		getrusage(RUSAGE_THREAD, &r1);
		preempted += r1.ru_nivcsw - r0.ru_nivcsw;
	}
	printf("%-9s %8.2f %8.2f %10.3f\n", u == NULL ? "send" : "io_uring",
	    cpu / 1e3 / batches / k, wall / 1e3 / batches / k,
	    (double)preempted / batches / k);
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	int k = argc > 1 ? atoi(argv[1]) : 126;
	int batches = argc > 2 ? atoi(argv[2]) : 100;
	struct uring u;
	long done = 0;
	int i, have_uring, uring_errno;

	if (k < 1 || k > MAXK || batches < 1) {
		fprintf(stderr, "usage: wake_batch [K (1..%d) [BATCHES]]\n", MAXK);
		return (2);
	}
	board = mmap(NULL, sizeof(*board), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (board == MAP_FAILED)
		return (1);
	have_uring = uring_init(&u, 512) == 0;
	uring_errno = errno;
	for (i = 0; i < k; ++i) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, socks[i]) != 0) {
			perror("wake_batch: socketpair");
			return (1);
		}
		if (xfork() == 0)
			sleeper(i);
	}
	printf("%d sleepers woken %d times each; per wakeup, the waker's:\n", k,
	    2 * batches * (have_uring ? 2 : 1));
	printf("%-9s %8s %8s %10s\n", "mode", "cpu us", "wall us", "preempted");
	for (i = 0; i < 2; ++i) {
		measure(k, batches, &done, NULL);
		if (have_uring)
			measure(k, batches, &done, &u);
	}
	if (!have_uring)
		printf("io_uring: not available (%s)\n", strerror(uring_errno));
	atomic_store(&board->stop, 1);
	for (i = 0; i < k; ++i)
		send(socks[i][0], bell, sizeof(bell), MSG_NOSIGNAL);
	while (wait(NULL) > 0)
		;
	return (0);
}
