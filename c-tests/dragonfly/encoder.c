/*
 * encoder -- DragonFly BSD's test/caps/encoder.c (spec 8.6) as written,
 * built as caps_e: prints the caps_struct encoding of each named user's
 * passwd entry. (Its "lookup failed" line lacks the name argument, as in
 * the original; the tests never reach it.) Do not edit (see README.md).
 */
#include <sys/types.h>
#include <libcaps/caps_struct.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>

int
main(int ac, char **av)
{
	int i;
	int n;
	char buf[1024];

	for (i = 1; i < ac; ++i) {
		struct passwd *pw;

		if ((pw = getpwnam(av[i])) == NULL) {
			printf("%s: lookup failed\n");
			continue;
		}
		n = caps_encode(buf, sizeof(buf), pw, &caps_passwd_struct);
		if (n > sizeof(buf)) {
			printf("buffer overflow during encoding\n");
		} else {
			buf[n] = 0;
			printf("%s\n", buf);
		}
	}
	return (0);
}
