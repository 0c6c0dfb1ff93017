/*
 * caps_s -- CAPS v2 test server: the kernel-style caps_sys_* calls.
 *
 * Written for libcaps for Linux from the description of DragonFly BSD's
 * test/caps/server.c (spec 8.5). Registers the service "test" for the
 * caller's uid and gid, open to any client, prints its port id and then
 * answers every request with "good". Every EVERY messages (requests and
 * dispose notices; default 1000000, the optional argument changes it) it
 * sets the service's generation number to the message count, which its
 * clients notice. Runs until killed.
 *
 * Build with -DDEBUG to print every message.
 */
#include <sys/types.h>
#include <sys/caps.h>
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
	long long every = 1000000;
	int cid;
	int n;

	if (ac > 1 && atoll(av[1]) > 0)
		every = atoll(av[1]);
	setvbuf(stdout, NULL, _IOLBF, 0);

	cid = caps_sys_service("test", getuid(), getgid(), 0, CAPF_ANYCLIENT);
	if (cid < 0) {
		perror("caps_sys_service");
		exit(1);
	}
	printf("cid = %d\n", cid);

	for (;;) {
		n = caps_sys_wait(cid, buf, sizeof(buf), &msgid, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("caps_sys_wait");
			exit(1);
		}
#ifdef DEBUG
		printf("n = %d msgid=%016llx state=%d errno=%d\n",
		    n, (unsigned long long)msgid.c_id, (int)msgid.c_state, errno);
		if (n > 0 && n <= (int)sizeof(buf))
			printf("BUFFER: %*.*s\n", n, n, buf);
#endif
		if (msgid.c_state != CAPMS_DISPOSE) {
			n = caps_sys_reply(cid, "good", 4, msgid.c_id);
#ifdef DEBUG
			printf("reply: n = %d\n", n);
#endif
		}
		if (++count % every == 0)
			caps_sys_setgen(cid, count);
	}
	return 0;
}
