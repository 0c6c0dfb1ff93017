/*
 * caps_s -- a CAPS (version 2, caps_sys_*) service named "test" that
 * answers every request with "good".  Pair it with caps_c (client.c).
 *
 * Our program, written for libcaps for Linux from the description of
 * DragonFly BSD's test/caps/server.c in the libcaps spec (section 8.5);
 * not a copy of DragonFly's file.  Build with -DDEBUG to see each
 * message.
 */
#include <sys/types.h>
#include <sys/caps.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define GEN_INTERVAL	1000000	/* bump the generation this often */

int
main(int ac, char **av)
{
	struct caps_msgid msgid;
	char buf[256];
	long long count;
	int cid;
	int n;

	cid = caps_sys_service("test", getuid(), getgid(), 0, CAPF_ANYCLIENT);
	if (cid == -1) {
		perror("caps_sys_service");
		exit(1);
	}
	printf("cid = %d\n", cid);

	for (count = 1; ; ++count) {
		n = caps_sys_wait(cid, buf, sizeof(buf), &msgid, NULL);
#ifdef DEBUG
		printf("n = %d msgid=%016llx state=%d errno=%d\n",
		    n, (long long)msgid.c_id, msgid.c_state, errno);
		if (n > 0)
			printf("BUFFER: %*.*s\n", n, n, buf);
#endif
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("caps_sys_wait");
			exit(1);
		}
		if (msgid.c_state != CAPMS_DISPOSE) {
			n = caps_sys_reply(cid, "good", 4, msgid.c_id);
#ifdef DEBUG
			printf("reply: n = %d\n", n);
#endif
		}
		if (count % GEN_INTERVAL == 0)
			caps_sys_setgen(cid, count);
	}
	/* NOTREACHED */
}
