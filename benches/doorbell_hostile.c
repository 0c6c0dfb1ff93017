/*
 * doorbell_hostile -- what a hostile client can do to a service that rings
 * its doorbell (not a benchmark: a check of the doorbells that
 * doorbell_bench prices; see docs/benchmarks-history.md, "pipe doorbell").
 *
 *	doorbell_hostile
 *
 * For each case the service makes a doorbell, keeps the descriptor it
 * rings and hands the client's descriptor to a second process, the
 * attacker, by SCM_RIGHTS on a Unix socket. The attacker does its worst,
 * then the service (a child of this program, so that it can be watched)
 * rings until a ring fails. If it has not come back after 2 seconds, the
 * line says where it sleeps (/proc/PID/stat and wchan); then the attacker
 * is killed, and if the service still has not come back it is killed too.
 *
 *	eventfd fill	an eventfd (EFD_NONBLOCK): the attacker clears
 *			O_NONBLOCK (F_SETFL: one open file description, the
 *			flag is shared) and adds 0xfffffffffffffffe to it
 *	pipe fill	a pipe, the service keeping its write end
 *			(O_NONBLOCK); the attacker clears O_NONBLOCK on its
 *			read end, shrinks the pipe to a page and never reads
 *	pipe fault	the same pipe; once a ring is in it the attacker
 *			reads it into a page registered with userfaultfd and
 *			never fills that page, so its read sleeps in the
 *			fault holding the pipe's mutex (needs a userfaultfd
 *			that traps the kernel's faults: root, or
 *			vm.unprivileged_userfaultfd=1; a FUSE mapping would
 *			do the same without either)
 *	socket fault	the socket doorbell of docs/wire-protocol.md, the
 *			attacker's recv of it stuck in the same fault
 */
#define _GNU_SOURCE
#include <linux/userfaultfd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"

enum kind { EVENTFD, PIPE, SOCKET };
enum attack { FILL, FAULT };

static void
send_fd(int s, int fd)
{
	union {
		struct cmsghdr	h;
		char		b[CMSG_SPACE(sizeof(int))];
	} u;
	char c = 0;
	struct iovec iov = { &c, 1 };
	struct msghdr m;
	struct cmsghdr *h;

	memset(&m, 0, sizeof(m));
	memset(&u, 0, sizeof(u));
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = u.b;
	m.msg_controllen = sizeof(u.b);
	h = CMSG_FIRSTHDR(&m);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &fd, sizeof(int));
	if (sendmsg(s, &m, 0) != 1) {
		perror("sendmsg");
		exit(1);
	}
}

static int
recv_fd(int s)
{
	union {
		struct cmsghdr	h;
		char		b[CMSG_SPACE(sizeof(int))];
	} u;
	char c;
	struct iovec iov = { &c, 1 };
	struct msghdr m;
	struct cmsghdr *h;
	int fd;

	memset(&m, 0, sizeof(m));
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = u.b;
	m.msg_controllen = sizeof(u.b);
	if (recvmsg(s, &m, 0) != 1 || (h = CMSG_FIRSTHDR(&m)) == NULL ||
	    h->cmsg_type != SCM_RIGHTS)
		_exit(1);
	memcpy(&fd, CMSG_DATA(h), sizeof(int));
	return (fd);
}

/* One ring of the service: 1, or -errno. */
static int
ring(enum kind k, int fd)
{
	static const char bell[48] = { 1 };
	uint64_t one = 1;
	ssize_t r;

	if (k == EVENTFD)
		r = write(fd, &one, sizeof(one));
	else if (k == PIPE)
		r = write(fd, bell, 1);
	else
		r = send(fd, bell, sizeof(bell), MSG_DONTWAIT);
	return (r > 0 ? 1 : -errno);
}

/* A page whose first touch sleeps until its userfaultfd answers (never). */
static void *
trap_page(void)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg;
	void *pg;
	int u;

	u = syscall(SYS_userfaultfd, O_CLOEXEC);
	if (u < 0 || ioctl(u, UFFDIO_API, &api) != 0)
		return (NULL);
	pg = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pg == MAP_FAILED)
		return (NULL);
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uintptr_t)pg;
	reg.range.len = 4096;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(u, UFFDIO_REGISTER, &reg) != 0)
		return (NULL);
	return (pg);	/* u stays open: the page stays a trap */
}

/*
 * The attacker: take the client's descriptor, attack, say so on the
 * socket ('y' done, 'n' cannot here), and stay (killed by the parent).
 */
static void
attacker(enum kind k, enum attack a, int s)
{
	uint64_t full = 0xfffffffffffffffeULL;
	int fd = recv_fd(s);
	char go, *pg = NULL;

	if (a == FAULT && (pg = trap_page()) == NULL) {
		send(s, "n", 1, 0);
		pause();
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	if (a == FILL && k == EVENTFD && write(fd, &full, sizeof(full)) != 8)
		_exit(1);
	if (a == FILL && k == PIPE && fcntl(fd, F_SETPIPE_SZ, 4096) < 0)
		_exit(1);
	if (a == FILL) {
		send(s, "y", 1, 0);
		pause();
	}
	/* FAULT: the service has rung once; read that ring into the trap. */
	if (read(s, &go, 1) != 1)
		_exit(1);
	send(s, "y", 1, 0);
	if (k == SOCKET)
		recv(fd, pg, 48, 0);
	else
		(void)read(fd, pg, 1);
	pause();
}

/* A process's state letter and kernel function, from /proc. */
static void
where(pid_t p, char *out, size_t n)
{
	char path[64], st[512], wchan[128], *q;
	FILE *f;

	snprintf(out, n, "?");
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)p);
	if ((f = fopen(path, "r")) == NULL)
		return;
	q = fgets(st, sizeof(st), f) ? strrchr(st, ')') : NULL;
	fclose(f);
	snprintf(path, sizeof(path), "/proc/%d/wchan", (int)p);
	if ((f = fopen(path, "r")) == NULL)
		return;
	if (fgets(wchan, sizeof(wchan), f) == NULL)
		wchan[0] = 0;
	fclose(f);
	if (q != NULL && q[1] && q[2])
		snprintf(out, n, "%c in %s", q[2], wchan);
}

/* Wait up to `sec` seconds for p; its status, or -1 if it is still there. */
static int
wait_for(pid_t p, double sec)
{
	double end = now() + sec;
	int st;

	while (now() < end) {
		if (waitpid(p, &st, WNOHANG) == p)
			return (st);
		usleep(10000);
	}
	return (-1);
}

static void
run_case(const char *name, enum kind k, enum attack a)
{
	int sv[2], res[2], fd = -1, cfd = -1, pp[2], st, n, err;
	pid_t atk, svc;
	char ok, at[160];
	double t0;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || pipe(res) != 0) {
		perror("socketpair");
		exit(1);
	}
	if (k == EVENTFD)
		fd = cfd = eventfd(0, EFD_NONBLOCK);
	else if (k == PIPE && pipe2(pp, O_NONBLOCK) == 0) {
		fd = pp[1];
		cfd = pp[0];
	} else if (k == SOCKET && socketpair(AF_UNIX, SOCK_STREAM, 0, pp) == 0) {
		fd = pp[0];
		cfd = pp[1];
	}
	if (fd < 0) {
		perror(name);
		exit(1);
	}
	if ((atk = xfork()) == 0) {
		close(sv[0]);
		close(fd);
		attacker(k, a, sv[1]);
		_exit(0);
	}
	send_fd(sv[0], cfd);
	if (k != EVENTFD)
		close(cfd);
	if (a == FAULT) {
		ring(k, fd);
		if (send(sv[0], "g", 1, 0) != 1)
			exit(1);
	}
	if (recv(sv[0], &ok, 1, 0) != 1 || ok != 'y') {
		printf("%-13s not here: no userfaultfd that traps the kernel's faults\n",
		    name);
		kill(atk, SIGKILL);
		reap(atk);
		goto out;
	}
	usleep(300000);		/* the attacker's read is in its fault */
	t0 = now();
	if ((svc = xfork()) == 0) {
		signal(SIGPIPE, SIG_IGN);
		for (n = 0; (err = ring(k, fd)) == 1 && n < 1000000; ++n)
			;
		if (write(res[1], &n, sizeof(n)) != sizeof(n) ||
		    write(res[1], &err, sizeof(err)) != sizeof(err))
			_exit(1);
		_exit(0);
	}
	if ((st = wait_for(svc, 2)) >= 0) {
		kill(atk, SIGKILL);
		reap(atk);
		if (read(res[0], &n, sizeof(n)) != sizeof(n) ||
		    read(res[0], &err, sizeof(err)) != sizeof(err))
			exit(1);
		printf("%-13s %d rings, then %s after %.3f s\n", name, n,
		    strerror(-err), now() - t0);
		goto out;
	}
	where(svc, at, sizeof(at));
	kill(atk, SIGKILL);
	reap(atk);
	if ((st = wait_for(svc, 1)) >= 0) {
		printf("%-13s blocked (%s) 2 s, until the attacker was killed\n",
		    name, at);
		goto out;
	}
	kill(svc, SIGKILL);
	waitpid(svc, &st, 0);
	printf("%-13s blocked (%s) 2 s, and after the attacker was killed; "
	    "service killed\n", name, at);
out:
	close(sv[0]);
	close(sv[1]);
	close(res[0]);
	close(res[1]);
	close(fd);
}

int
main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("the service rings until a ring fails; 2 s is called blocked\n");
	run_case("eventfd fill", EVENTFD, FILL);
	run_case("pipe fill", PIPE, FILL);
	run_case("pipe fault", PIPE, FAULT);
	run_case("socket fault", SOCKET, FAULT);
	return (0);
}
