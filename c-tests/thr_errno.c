/*
 * errno belongs to the LWKT thread: a thread's errno survives every way
 * of giving up the cpu, and another thread's failing system call in the
 * meantime does not show through. Each mode runs thread A, which makes
 * open() fail with ENOENT, starts a "spoiler" thread B (read(-1) fails
 * with EBADF) and then gives up the cpu in one way:
 *
 *   yield    lwkt_yield(); also: a new thread starts with errno 0
 *   domsg    a blocking lwkt_domsg() to a thread that spoils before it
 *            replies
 *   caps     a CAPS reply wait, lwkt_domsg() and caps_client_waitreply(),
 *            to a service in a child process
 *   token    a wait for a token another cpu owns
 *
 * A prints the errno it reads afterwards.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <sys/caps.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quiet.h"

static volatile int spoiled, token_held;
static struct lwkt_token tok;
static thread_t server_td;
static caps_port_t caps_port;

static const char *
ename(int e)
{
	static char buf[32];

	switch (e) {
	case 0:
		return ("0");
	case ENOENT:
		return ("ENOENT");
	case EBADF:
		return ("EBADF");
	case ERANGE:
		return ("ERANGE");
	default:
		snprintf(buf, sizeof(buf), "%d", e);
		return (buf);
	}
}

static void
spoiler(void *arg)
{
	char c;

	(void)arg;
	rel_mplock();
	if (read(-1, &c, 1) < 0 && errno == EBADF)
		spoiled = 1;
}

static void
fail_open(void)
{
	if (open("/nonexistent/libcaps-errno-test", O_RDONLY) >= 0)
		abort();
}

static void
report(const char *how, int before, int after)
{
	printf("%s: errno before %s, after %s, spoiler %s\n", how,
	    ename(before), ename(after), spoiled ? "ran" : "did not run");
	spoiled = 0;
}

static void
newborn(void *arg)
{
	(void)arg;
	printf("new thread: errno %s\n", ename(errno));
}

static void
a_yield(void *arg)
{
	int before;

	(void)arg;
	fail_open();
	before = errno;
	start_quiet(spoiler, NULL, -1, "spoiler");
	lwkt_yield();
	report("yield", before, errno);
	errno = ERANGE;
	start_quiet(newborn, NULL, -1, "newborn");
	lwkt_yield();
	printf("creator after yield: errno %s\n", ename(errno));
}

static void
server(void *arg)
{
	lwkt_msg_t msg;
	char c;

	(void)arg;
	msg = lwkt_waitport(&curthread->td_msgport, NULL);
	if (read(-1, &c, 1) < 0 && errno == EBADF)
		spoiled = 1;
	lwkt_replymsg(msg, 0);
}

static void
a_domsg(void *arg)
{
	struct lwkt_msg msg;
	int before;

	(void)arg;
	fail_open();
	before = errno;
	lwkt_initmsg(&msg, &curthread->td_msgport, 1);
	lwkt_domsg(&server_td->td_msgport, &msg);
	report("domsg", before, errno);
}

/* ENOENT in errno, a spoiler ready to run, a message for the service. */
static int
prepare_caps_msg(struct lwkt_msg *msg, int cmd)
{
	int before;

	fail_open();
	before = errno;
	start_quiet(spoiler, NULL, -1, "spoiler");
	lwkt_initmsg(msg, &curthread->td_msgport, cmd);
	msg->ms_msgsize = sizeof(*msg);
	msg->ms_maxsize = sizeof(*msg);
	return (before);
}

static void
a_caps(void *arg)
{
	struct lwkt_msg msg;
	int before, i;

	(void)arg;
	/* The client port belongs to this thread (only it may wait on it). */
	for (i = 0; i < 1000 && caps_port == NULL; ++i) {
		caps_port = caps_client("thr_errno", (uid_t)-1, 0);
		if (caps_port == NULL)
			usleep(10000);
	}
	if (caps_port == NULL) {
		printf("cannot connect\n");
		return;
	}
	before = prepare_caps_msg(&msg, 1);
	lwkt_domsg(&caps_port->lport, &msg);
	report("caps lwkt_domsg", before, errno);

	before = prepare_caps_msg(&msg, 2);
	lwkt_beginmsg(&caps_port->lport, &msg);
	if (caps_client_waitreply(caps_port, &msg) == NULL)
		printf("caps_client_waitreply failed\n");
	report("caps_client_waitreply", before, errno);
	caps_close(caps_port);
}

static void
holder(void *arg)
{
	(void)arg;
	rel_mplock();
	lwkt_gettoken(&tok);
	token_held = 1;
	while (!spoiled)
		;
	/* Exit: the switch away hands the token to the waiting cpu. */
}

static void
a_token(void *arg)
{
	int before;

	(void)arg;
	rel_mplock();
	fail_open();
	before = errno;
	start_quiet(spoiler, NULL, -1, "spoiler");
	lwkt_gettoken(&tok);
	report("token", before, errno);
	lwkt_reltoken(&tok);
}

static int
caps_server(void)
{
	caps_port_t port;
	lwkt_msg_t msg;
	int i;

	port = caps_service("thr_errno", (gid_t)-1, 0600, 0);
	if (port == NULL) {
		perror("caps_service");
		return (1);
	}
	for (i = 0; i < 2; ++i) {
		msg = lwkt_waitport(&port->lport, NULL);
		if (msg == NULL)
			return (1);
		lwkt_replymsg(msg, 0);
	}
	/* Let the client read the last reply before the socket goes. */
	sleep(1);
	caps_close(port);
	return (0);
}

static void
run(void (*a)(void *), int cpu)
{
	start_quiet(a, NULL, cpu, "A");
	lwkt_deschedule_self();
	lwkt_switch();
}

int
main(int ac, char **av)
{
	const char *mode = ac > 1 ? av[1] : "yield";

	if (strcmp(mode, "yield") == 0) {
		run(a_yield, -1);
	} else if (strcmp(mode, "domsg") == 0) {
		server_td = start_quiet(server, NULL, -1, "server");
		run(a_domsg, -1);
	} else if (strcmp(mode, "caps") == 0) {
		char dir[] = "/tmp/libcaps-errno-XXXXXX";
		pid_t pid;
		int status;

		if (mkdtemp(dir) == NULL || setenv("LIBCAPS_DIR", dir, 1) != 0)
			return (1);
		fflush(stdout);
		pid = fork();
		if (pid == 0)
			_exit(caps_server());
		run(a_caps, -1);
		if (caps_port == NULL)
			kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		rmdir(dir);
	} else if (strcmp(mode, "token") == 0) {
		int cpu;

		uthread_init();
		lwkt_inittoken(&tok);
		cpu = caps_fork_vcpu();
		rel_mplock();
		start_quiet(holder, NULL, cpu, "holder");
		while (!token_held)
			lwkt_yield();
		run(a_token, -1);
	} else {
		fprintf(stderr, "usage: thr_errno yield|domsg|caps|token\n");
		return (2);
	}
	return (0);
}
