/*
 * caps_c -- CAPS v2 test client: the kernel-style caps_sys_* calls.
 *
 * Written for libcaps for Linux from the description of DragonFly BSD's
 * test/caps/client.c (spec 8.5). Sends "xyz" to the service "test" and
 * waits for the reply, over and over:
 *
 *   - a lost connection (or a port inherited across fork(), which fails
 *     with ENOTCONN) makes it reconnect, waiting for the service to come
 *     back (CAPF_WAITSVC);
 *   - a change of the service's generation number is reported;
 *   - every 65536 round trips it prints "WHICH COUNT";
 *   - when the counter reaches 1000 it forks: the child (WHICH + 1)
 *     reconnects and goes on, up to a chain of 11 processes (a child
 *     forks again only after its counter wrapped at 100000000).
 *
 * Usage: caps_c [COUNT [DELAY_US]]. Without COUNT it runs until killed;
 * with it, each process stops when its counter reaches COUNT and a parent
 * waits for its child (exit status 1 if any process failed). DELAY_US
 * sleeps that long after each round trip.
 */
#include <sys/types.h>
#include <sys/caps.h>
#include <sys/wait.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int
main(int ac, char **av)
{
	struct caps_msgid msgid;
	char buf[256];
	long long count = 0;
	long long limit = -1;
	long delay = 0;
	caps_gen_t gen = 0;
	caps_gen_t ngen = 0;
	off_t msgcid;
	pid_t child = -1;
	pid_t pid;
	int which = 0;
	int forked = 0;
	int lost = 0;
	int status = 0;
	int cid;
	int err;
	int n;

	if (ac > 1)
		limit = atoll(av[1]);
	if (ac > 2)
		delay = atol(av[2]);
	setvbuf(stdout, NULL, _IOLBF, 0);

	cid = caps_sys_client("test", getuid(), getgid(), 0, CAPF_ANYCLIENT);

	while (limit < 0 || count < limit) {
		msgcid = -1;
		err = 0;
		if (cid >= 0) {
			msgcid = caps_sys_put(cid, "xyz", 3);
			err = errno;
			ngen = caps_sys_getgen(cid);
		}
		if (cid < 0 || (msgcid < 0 && err == ENOTCONN)) {
			if (!lost) {
				printf("%d client forked or lost connection, "
				    "reconnecting\n", which);
				lost = 1;
			}
			if (cid >= 0)
				caps_sys_close(cid);
			cid = caps_sys_client("test", getuid(), getgid(), 0,
			    CAPF_ANYCLIENT | CAPF_WAITSVC);
			if (cid < 0 && errno != EINTR) {
				perror("caps_sys_client");
				exit(1);
			}
			continue;
		}
		if (msgcid < 0) {
			errno = err;
			perror("caps_sys_put");
			exit(1);
		}
		if (lost) {
			printf("%d client resume on reconnect after lost "
			    "connection\n", which);
			lost = 0;
		}
		if (ngen != gen) {
			printf("%d client: note generation change %lld\n",
			    which, (long long)ngen);
			gen = ngen;
		}
		n = caps_sys_wait(cid, buf, sizeof(buf), &msgid, NULL);
		if (n < 0 && errno != ENOTCONN && errno != EINTR) {
			perror("caps_sys_wait");
			exit(1);
		}
		if (delay > 0)
			usleep(delay);
		if (++count % 65536 == 0)
			printf("%d %lld\n", which, count);
		if (count == 100000000) {
			count = 0;
			forked = 0;
		}
		if (count == 1000 && which < 10 && !forked) {
			forked = 1;
			fflush(stdout);
			pid = fork();
			if (pid == 0) {
				usleep(100000);
				++which;
				child = -1;
			} else if (pid > 0) {
				printf("forked pid %d client #%d\n",
				    (int)getpid(), which + 1);
				child = pid;
			} else {
				perror("fork");
			}
		}
	}
	if (child > 0) {
		if (waitpid(child, &status, 0) < 0 ||
		    !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			return 1;
	}
	return 0;
}
