/*
 * doorbell_bench -- what one wakeup of a sleeping process costs, the way a
 * CAPS shared-memory connection rings it today against other ways to ring
 * it (ideas, none used yet: see docs/benchmarks-history.md, "Issue 17
 * point 2: where the time goes").
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
 *	poll	the socket doorbell, the sleeper waiting in poll(2) on its
 *		socket instead of epoll_wait (as a CAPS v2 caller's wait
 *		does), then reading it
 *	recv	the socket doorbell, but the sleeper blocks in recv on the
 *		socket instead of epoll_wait and then recv (one system call
 *		per sleep instead of two; a cpu asleep there sees nothing
 *		else)
 *	eventfd	an eventfd per sleeper, watched by its epoll: the waker
 *		writes 8 bytes to it; the sleeper waits in epoll_wait, then
 *		reads them (a doorbell that carries no bytes through a
 *		socket, the wait as today)
 *	uring	the futex word, but the sleeper waits in io_uring: an
 *		IORING_OP_FUTEX_WAIT on its word submitted and waited for in
 *		one io_uring_enter, beside a multishot IORING_OP_POLL_ADD on
 *		its epoll descriptor (holding a socket, as a CAPS cpu's
 *		does) armed once, so that a socket or an eventfd would wake
 *		it too (Linux 6.7 or later; the row says so if the kernel
 *		has no io_uring or no futex operations); the waker calls
 *		FUTEX_WAKE
 *	pipe	a pipe per sleeper, its read end watched by its epoll: the
 *		waker writes 1 byte to the write end it alone holds
 *		(O_NONBLOCK, and a full pipe only means a ring is pending);
 *		the sleeper waits in epoll_wait, then reads what is there
 *
 * Columns, per wakeup (two per round): wakeups per second; cpu time
 * (user + system, getrusage) of both processes, that is the cost of one
 * wakeup to the waker plus the sleeper; context switches (1.00: every
 * turn slept).
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <linux/io_uring.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"

struct board {
	_Atomic int	word[2];	/* futex: one per sleeper */
	double		cpu_us[2];	/* each side's cpu time */
	_Atomic int	err;		/* uring: why it cannot run here */
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

struct uring;

/* One side of a row: who it is and what it waits with. */
struct side {
	int		 me;		/* 0 rings first */
	int		 fd;		/* its end of the socket pair */
	int		 ep;		/* an epoll instance holding fd */
	const int	*efd;		/* the two eventfds, one per sleeper */
	const int	*pfd;		/* pipe: sleeper i reads pfd[2i], is
					 * woken through pfd[2i + 1] */
	struct uring	*u;		/* uring: its io_uring */
};

/* Take `rounds` turns: side 0 rings then waits, side 1 waits then rings. */
static void
take_turns(struct side *s, void (*ring)(struct side *), void (*wait)(struct side *))
{
	long i, cs0, cs1;
	double c0 = cpu_us(&cs0);

	for (i = 0; i < rounds && !board->err; ++i) {
		if (s->me == 0)
			ring(s);
		wait(s);
		if (s->me == 1)
			ring(s);
	}
	board->cpu_us[s->me] = cpu_us(&cs1) - c0;
	board->csw[s->me] = cs1 - cs0;
}

static void
socket_ring(struct side *s)
{
	static const char bell[48];

	send(s->fd, bell, sizeof(bell), MSG_DONTWAIT);
}

/* socket: epoll_wait, then read the doorbell (as a CAPS cpu does). */
static void
socket_wait(struct side *s)
{
	struct epoll_event out;
	char bell[48];

	while (epoll_wait(s->ep, &out, 1, -1) < 1)
		;
	if (readn(s->fd, bell, sizeof(bell)) != 0)
		_exit(1);
}

/* poll: poll(2) on the socket, then read the doorbell. */
static void
poll_wait(struct side *s)
{
	struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
	char bell[48];

	while (poll(&pfd, 1, -1) < 1)
		;
	if (readn(s->fd, bell, sizeof(bell)) != 0)
		_exit(1);
}

/* recv: block in recv on the socket itself. */
static void
recv_wait(struct side *s)
{
	char bell[48];

	if (recv(s->fd, bell, sizeof(bell), MSG_WAITALL) != sizeof(bell))
		_exit(1);
}

static void
futex_ring(_Atomic int *w)
{
	atomic_store(w, 1);
	syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void
futex_ring_peer(struct side *s)
{
	futex_ring(&board->word[1 - s->me]);
}

static void
futex_wait(struct side *s)
{
	_Atomic int *w = &board->word[s->me];

	while (atomic_exchange(w, 0) == 0)
		syscall(SYS_futex, w, FUTEX_WAIT, 0, NULL, NULL, 0);
}

static void
eventfd_ring(struct side *s)
{
	uint64_t one = 1;

	if (write(s->efd[1 - s->me], &one, 8) != 8)
		_exit(1);
}

/* eventfd: epoll_wait on one's eventfd, then read it. */
static void
eventfd_wait(struct side *s)
{
	struct epoll_event out;
	uint64_t v;

	while (epoll_wait(s->ep, &out, 1, -1) < 1)
		;
	if (read(s->efd[s->me], &v, 8) != 8)
		_exit(1);
}

static void
pipe_ring(struct side *s)
{
	char one = 1;

	/* EAGAIN: the pipe is full, a ring is pending already. */
	if (write(s->pfd[2 * (1 - s->me) + 1], &one, 1) != 1 && errno != EAGAIN)
		_exit(1);
}

/* pipe: epoll_wait on one's pipe, then read all that is in it. */
static void
pipe_wait(struct side *s)
{
	struct epoll_event out;
	char bell[64];

	while (epoll_wait(s->ep, &out, 1, -1) < 1)
		;
	if (read(s->pfd[2 * s->me], bell, sizeof(bell)) < 1)
		_exit(1);
}

/*
 * The io_uring of the uring row, its rings mapped as the kernel's
 * offsets say (the system's header may predate the futex operations:
 * their numbers are Linux 6.7's).
 */
#define OP_FUTEX_WAIT	51
#define FUTEX2_U32	0x02
#define FUTEX_ANY	0xffffffffULL
#define TAG_FUTEX	1
#define TAG_POLL	2

struct uring {
	int			 fd;
	_Atomic unsigned	*sq_tail, *cq_head, *cq_tail;
	unsigned		 sq_mask, cq_mask, *sq_array;
	struct io_uring_sqe	*sqes;
	struct io_uring_cqe	*cqes;
};

static int
uring_setup(struct uring *u)
{
	struct io_uring_params p;
	char *sq, *cq;

	memset(&p, 0, sizeof(p));
	u->fd = syscall(SYS_io_uring_setup, 8, &p);
	if (u->fd < 0)
		return (-1);
	sq = mmap(NULL, p.sq_off.array + p.sq_entries * sizeof(unsigned),
	    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
	    IORING_OFF_SQ_RING);
	cq = mmap(NULL, p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe),
	    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
	    IORING_OFF_CQ_RING);
	u->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe),
	    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
	    IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || u->sqes == MAP_FAILED)
		return (-1);
	u->sq_tail = (void *)(sq + p.sq_off.tail);
	u->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
	u->sq_array = (void *)(sq + p.sq_off.array);
	u->cq_head = (void *)(cq + p.cq_off.head);
	u->cq_tail = (void *)(cq + p.cq_off.tail);
	u->cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
	u->cqes = (void *)(cq + p.cq_off.cqes);
	return (0);
}

/* Queue one entry (not submitted yet); the caller fills it. */
static struct io_uring_sqe *
uring_sqe(struct uring *u)
{
	unsigned t = atomic_load_explicit(u->sq_tail, memory_order_relaxed);
	struct io_uring_sqe *e = &u->sqes[t & u->sq_mask];

	memset(e, 0, sizeof(*e));
	u->sq_array[t & u->sq_mask] = t & u->sq_mask;
	atomic_store_explicit(u->sq_tail, t + 1, memory_order_release);
	return (e);
}

/* Submit `n` and wait for `wait` completions; the futex wait's result
 * (0 woken, -EAGAIN the word was not 0 any more) or 1 if it did not end. */
static int
uring_enter(struct uring *u, unsigned n, unsigned wait)
{
	unsigned h;
	int r = 1;

	if (syscall(SYS_io_uring_enter, u->fd, n, wait,
	    wait ? IORING_ENTER_GETEVENTS : 0, NULL, 0) < 0 && errno != EINTR)
		_exit(2);
	h = atomic_load_explicit(u->cq_head, memory_order_relaxed);
	while (h != atomic_load_explicit(u->cq_tail, memory_order_acquire)) {
		struct io_uring_cqe *c = &u->cqes[h++ & u->cq_mask];

		if (c->user_data == TAG_FUTEX)
			r = c->res;
		else if (c->res < 0)
			r = c->res;	/* the poll failed: no wakeups from it */
	}
	atomic_store_explicit(u->cq_head, h, memory_order_release);
	return (r);
}

/* 0, or the error that makes the uring row impossible here. */
static int
uring_side_setup(struct uring *u, int ep)
{
	struct io_uring_sqe *e;
	_Atomic int probe = 1;
	int r;

	if (uring_setup(u) != 0)
		return (errno);
	e = uring_sqe(u);
	e->opcode = IORING_OP_POLL_ADD;
	e->fd = ep;
	e->poll32_events = POLLIN;
	e->len = IORING_POLL_ADD_MULTI;
	e->user_data = TAG_POLL;
	/* A wait on a word that is not 0 ends at once: is the op there? */
	e = uring_sqe(u);
	e->opcode = OP_FUTEX_WAIT;
	e->fd = FUTEX2_U32;
	e->addr = (uintptr_t)&probe;
	e->addr2 = 0;
	e->addr3 = FUTEX_ANY;
	e->user_data = TAG_FUTEX;
	r = uring_enter(u, 2, 1);
	if (r == -EAGAIN)
		return (0);
	return (r < 0 ? -r : EINVAL);
}

/* uring: wait on one's word in io_uring (the epoll instance polled beside). */
static void
uring_wait(struct side *s)
{
	_Atomic int *w = &board->word[s->me];

	while (atomic_exchange(w, 0) == 0) {
		struct io_uring_sqe *e = uring_sqe(s->u);

		e->opcode = OP_FUTEX_WAIT;
		e->fd = FUTEX2_U32;
		e->addr = (uintptr_t)w;
		e->addr2 = 0;
		e->addr3 = FUTEX_ANY;
		e->user_data = TAG_FUTEX;
		/* A completion of the poll alone: wait on (nothing to
		 * submit; the socket is quiet in this benchmark). */
		if (uring_enter(s->u, 1, 1) == 1)
			while (uring_enter(s->u, 0, 1) == 1)
				;
	}
}

/* How each row rings and waits, in the order of main's names (uring, 4,
 * sets its io_uring up first). */
static const struct {
	void	(*ring)(struct side *);
	void	(*wait)(struct side *);
} row[] = {
	{ socket_ring, socket_wait },
	{ futex_ring_peer, futex_wait },
	{ socket_ring, recv_wait },
	{ eventfd_ring, eventfd_wait },
	{ futex_ring_peer, uring_wait },
	{ socket_ring, poll_wait },
	{ pipe_ring, pipe_wait },
};

/* Run side `me` of row k over socket pair sv, eventfds efd, pipes pfd. */
static void
run_side(int k, int me, const int *sv, const int *efd, const int *pfd)
{
	struct epoll_event ev;
	struct side s = { .me = me, .fd = sv[me], .efd = efd, .pfd = pfd };
	struct uring u;
	int err;

	/* The sleeper's epoll instance: its eventfd or pipe, else its socket. */
	s.ep = epoll_create1(0);
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	epoll_ctl(s.ep, EPOLL_CTL_ADD,
	    k == 3 ? efd[me] : k == 6 ? pfd[2 * me] : s.fd, &ev);
	if (k != 4) {
		take_turns(&s, row[k].ring, row[k].wait);
		return;
	}
	s.u = &u;
	err = uring_side_setup(&u, s.ep);
	if (err != 0) {
		/* Release the other side, wherever it waits. */
		board->err = err;
		futex_ring(&board->word[0]);
		futex_ring(&board->word[1]);
		return;
	}
	take_turns(&s, futex_ring_peer, uring_wait);
}

int
main(int ac, char **av)
{
	static const char *name[] = { "socket", "futex", "recv", "eventfd", "uring",
	    "poll", "pipe" };
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
	for (k = 0; k < 7; ++k) {
		int sv[2], efd[2], pfd[4];
		double t0;
		pid_t p;

		memset(board, 0, sizeof(*board));
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
			perror("socketpair");
			return (1);
		}
		efd[0] = eventfd(0, EFD_NONBLOCK);
		efd[1] = eventfd(0, EFD_NONBLOCK);
		if (efd[0] < 0 || efd[1] < 0) {
			perror("eventfd");
			return (1);
		}
		if (pipe2(pfd, O_NONBLOCK) != 0 || pipe2(pfd + 2, O_NONBLOCK) != 0) {
			perror("pipe2");
			return (1);
		}
		t0 = now();
		p = xfork();
		if (p == 0) {
			run_side(k, 1, sv, efd, pfd);
			_exit(0);
		}
		run_side(k, 0, sv, efd, pfd);
		reap(p);
		close(efd[0]);
		close(efd[1]);
		for (int i = 0; i < 4; ++i)
			close(pfd[i]);
		if (board->err) {
			printf("%-8s not here: %s\n", name[k], strerror(board->err));
			close(sv[0]);
			close(sv[1]);
			continue;
		}
		printf("%-8s %10.0f %14.2f %10.2f\n", name[k], 2 * rounds / (now() - t0),
		    (board->cpu_us[0] + board->cpu_us[1]) / (2 * rounds),
		    (double)(board->csw[0] + board->csw[1]) / (2 * rounds));
		close(sv[0]);
		close(sv[1]);
	}
	return (0);
}
