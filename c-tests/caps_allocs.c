/*
 * caps_allocs -- how many times a v1 client and its service call malloc
 * per round trip once warm (issue 17: a payload buffer allocated and
 * freed for every frame read, on both sides).
 *
 *	caps_allocs
 *
 * The service is a child process, the client the parent; one request of
 * PAYLOAD bytes outstanding at a time. Both count their calls to malloc
 * (this program's malloc, which the library's allocations reach too,
 * calls glibc's) over the ROUNDS round trips after WARM first ones, and
 * print them: "client N" from the client, "service N" from the service.
 * Counts, not clocks: nothing here depends on timing.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <sys/caps.h>
#include <sys/wait.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NAME	"allocs"
#define PAYLOAD	64
#define WARM	200
#define ROUNDS	2000

extern void *__libc_malloc(size_t);

static unsigned long mallocs;	/* atomic: every kernel thread calls malloc */

void *
malloc(size_t n)
{
	__atomic_add_fetch(&mallocs, 1, __ATOMIC_RELAXED);
	return (__libc_malloc(n));
}

static unsigned long
count(void)
{
	return (__atomic_load_n(&mallocs, __ATOMIC_RELAXED));
}

struct tmsg {
	struct lwkt_msg	msg;
	unsigned char	data[PAYLOAD];
};

static void
fail(const char *who, const char *what)
{
	fprintf(stderr, "caps_allocs: %s: %s\n", who, what);
	_exit(1);
}

static void
server(int up)
{
	unsigned long at = 0;
	caps_port_t port;
	lwkt_msg_t msg;
	char c = 1;
	int i;

	port = caps_service(NAME, (gid_t)-1, 0600, 0);
	if (port == NULL)
		fail("service", "caps_service failed");
	if (write(up, &c, 1) != 1)
		_exit(1);
	for (i = 0; i < WARM + ROUNDS; ++i) {
		if (i == WARM)
			at = count();
		if ((msg = lwkt_waitport(&port->lport, NULL)) == NULL)
			fail("service", "closed");
		lwkt_replymsg(msg, 0);
	}
	printf("service %lu\n", count() - at);
	fflush(stdout);
	caps_close(port);
	_exit(0);
}

int
main(void)
{
	struct lwkt_port rport;
	unsigned long at = 0;
	struct tmsg m;
	caps_port_t port;
	int up[2], status, i;
	pid_t pid;
	char c;

	if (pipe(up) != 0)
		fail("client", "pipe");
	fflush(stdout);
	if ((pid = fork()) < 0)
		fail("client", "fork");
	if (pid == 0)
		server(up[1]);
	if (read(up[0], &c, 1) != 1)
		fail("client", "the service did not start");
	lwkt_initport(&rport, curthread);
	if ((port = caps_client(NAME, (uid_t)-1, 0)) == NULL)
		fail("client", "caps_client failed");
	for (i = 0; i < WARM + ROUNDS; ++i) {
		if (i == WARM)
			at = count();
		lwkt_initmsg(&m.msg, &rport, 0);
		m.msg.ms_msgsize = m.msg.ms_maxsize = sizeof(m);
		memset(m.data, i & 0xff, sizeof(m.data));
		lwkt_beginmsg(&port->lport, &m.msg);
		if (caps_client_waitreply(port, &m.msg) == NULL)
			fail("client", "a reply was lost");
	}
	printf("client %lu\n", count() - at);
	fflush(stdout);
	caps_close(port);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		fail("client", "the service failed");
	return (0);
}
