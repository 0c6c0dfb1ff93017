/*
 * caps_e -- print the caps_struct encoding of passwd entries.
 *
 * usage: caps_e user [user ...]
 *
 * One line per user: the encoding of getpwnam(user) with
 * caps_passwd_struct. Unknown users get "caps_e: USER: lookup failed" on
 * stderr and make the exit status 1. Mirrors DragonFly's
 * test/caps/encoder.c (spec section 8.6); pipe it into caps_d.
 */
#include <sys/types.h>
#include <pwd.h>
#include <stdio.h>
#include <libcaps/caps_struct.h>

int
main(int ac, char **av)
{
	char buf[1024];
	int status = 0;
	int i;

	for (i = 1; i < ac; ++i) {
		struct passwd *pw;
		int n;

		if ((pw = getpwnam(av[i])) == NULL) {
			fprintf(stderr, "caps_e: %s: lookup failed\n", av[i]);
			status = 1;
			continue;
		}
		n = caps_encode(buf, (int)sizeof(buf), pw, &caps_passwd_struct);
		/* the encoding plus its NUL must fit */
		if (n < 0 || n >= (int)sizeof(buf)) {
			fprintf(stderr, "caps_e: %s: buffer overflow during encoding (%d bytes)\n",
			    av[i], n);
			status = 1;
			continue;
		}
		fwrite(buf, 1, (size_t)n, stdout);
		putchar('\n');
	}
	return (status);
}
