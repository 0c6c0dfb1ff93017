/*
 * caps_e -- print the caps_struct encoding of the passwd entry of each
 * user named on the command line, one line per user.
 *
 *	caps_e root daemon | caps_d
 *
 * Our program, written for libcaps for Linux from the description of
 * DragonFly BSD's test/caps/encoder.c in the libcaps spec (section 8.6);
 * not a copy of DragonFly's file.  Two slips the spec records in the
 * original are not repeated: the lookup-failure message names the user,
 * and an encoding of exactly 1024 bytes is printed without writing past
 * the buffer.
 */
#include <sys/types.h>
#include <pwd.h>
#include <stdio.h>
#include <libcaps/caps_struct.h>

#define ENCBUFSIZE	1024

int
main(int ac, char **av)
{
	char encoded[ENCBUFSIZE];
	struct passwd *pw;
	int len;
	int i;

	for (i = 1; i < ac; ++i) {
		if ((pw = getpwnam(av[i])) == NULL) {
			printf("%s: lookup failed\n", av[i]);
			continue;
		}
		len = caps_encode(encoded, ENCBUFSIZE, pw,
		    &caps_passwd_struct);
		if (len > ENCBUFSIZE)
			printf("buffer overflow during encoding\n");
		else
			printf("%.*s\n", len, encoded);
	}
	return (0);
}
