/*
 * caps_c -- round trips to the CAPS (version 2) service "test" (caps_s,
 * server.c), forever.  At its 1000th round trip the client forks; the
 * child's inherited connection is only a placeholder, so it reconnects
 * and goes on, and forks again after its counter wraps: one client
 * grows into a chain of up to eleven processes.  Kill and restart the
 * server to see the client wait for it (CAPF_WAITSVC) and notice the
 * new generation.
 *
 * Our program, written for libcaps for Linux from the description of
 * DragonFly BSD's test/caps/client.c in the libcaps spec (section 8.5);
 * not a copy of DragonFly's file.
 */
#include <sys/types.h>
#include <sys/caps.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define FORK_AT		1000		/* fork at this round trip */
#define MAX_CLIENTS	10		/* clients #1..#10 fork no further */
#define COUNT_WRAP	100000000	/* the counter wraps here */
#define REPORT_MASK	65535		/* report every 65536 round trips */

static int
connect_test(int flags)
{
	return (caps_sys_client("test", getuid(), getgid(), 0,
	    CAPF_ANYCLIENT | flags));
}

int
main(int ac, char **av)
{
	struct caps_msgid msgid;
	char buf[256];
	long long count = 0;
	caps_gen_t gen = -1;	/* the last generation seen (-1: none) */
	caps_gen_t ngen;
	off_t msgcid;
	int lost = 0;		/* reconnecting; said so already */
	int forked = 0;		/* this process has forked */
	int which = 0;		/* 0: the first client, n: the n-th child */
	pid_t pid;
	int cid;

	cid = connect_test(0);
	for (;;) {
		msgcid = caps_sys_put(cid, "xyz", 3);
		ngen = caps_sys_getgen(cid);
		if (cid < 0 || (msgcid < 0 && errno == ENOTCONN)) {
			if (lost == 0) {
				printf("%d client forked or lost connection, "
				    "reconnecting\n", which);
				lost = 1;
			}
			caps_sys_close(cid);
			cid = connect_test(CAPF_WAITSVC);
			continue;
		}
		if (msgcid < 0) {
			perror("caps_sys_put");
			exit(1);
		}
		if (lost) {
			printf("%d client resume on reconnect after lost "
			    "connection\n", which);
			lost = 0;
		}
		if (ngen != gen) {
			if (gen != -1)
				printf("%d client: note generation change "
				    "%lld\n", which, (long long)ngen);
			gen = ngen;
		}
		if (caps_sys_wait(cid, buf, sizeof(buf), &msgid, NULL) < 0)
			continue;	/* the next put finds out why */

		++count;
		if ((count & REPORT_MASK) == 0)
			printf("%d %lld\n", which, count);
		if (count == COUNT_WRAP)
			count = 0;
		if (count == FORK_AT && which < MAX_CLIENTS && forked == 0) {
			fflush(stdout);
			pid = fork();
			if (pid == 0) {
				/* The child: its cid is a placeholder now. */
				usleep(100000);
				++which;
			} else if (pid > 0) {
				forked = 1;
				printf("forked pid %d client #%d\n",
				    (int)getpid(), which + 1);
			} else {
				perror("fork");
			}
		}
	}
	/* NOTREACHED */
}
