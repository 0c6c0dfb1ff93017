/*
 * caps_d -- decode caps_struct passwd encodings read from stdin.
 *
 * For each line: "decode N bytes error E", then either the decoded
 * struct passwd or, for malformed input, the line with the offending
 * character shown in reverse video (ESC[7m c ESC[m). Exit status 1 if
 * any line failed. Mirrors DragonFly's test/caps/decoder.c (spec section
 * 8.6); glibc's struct passwd has no pw_change, pw_class or pw_expire, so
 * those lines are not printed.
 */
#include <sys/types.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <libcaps/caps_struct.h>

static const char *
str(const char *s)
{
	return (s != NULL ? s : "(null)");
}

static void
highlight(const char *line, int len, int n)
{
	int i = n;

	/* the offending byte; past the end, the last one; not the newline */
	if (i >= len)
		i = len - 1;
	if (i > 0 && line[i] == '\n')
		--i;
	if (i < 0)
		i = 0;
	fwrite(line, 1, (size_t)i, stdout);
	if (i < len)
		printf("\033[7m%c\033[m%s", line[i], line + i + 1);
	if (len == 0 || line[len - 1] != '\n')
		putchar('\n');
}

int
main(void)
{
	char line[1024];
	int status = 0;

	while (fgets(line, sizeof(line), stdin) != NULL) {
		struct passwd pw;
		int len = (int)strlen(line);
		int error;
		int n;

		memset(&pw, 0, sizeof(pw));
		n = caps_decode(line, len, &pw, &caps_passwd_struct, &error);
		printf("decode %d bytes error %d\n", n, error);
		if (error == EINVAL) {
			highlight(line, len, n);
			status = 1;
			continue;
		}
		if (error != 0) {
			printf("no passwd structure in this line\n");
			status = 1;
			continue;
		}
		printf("{\n");
		printf("    pw_name = \"%s\"\n", str(pw.pw_name));
		printf("    pw_passwd = \"%s\"\n", str(pw.pw_passwd));
		printf("    pw_uid = %d\n", (int)pw.pw_uid);
		printf("    pw_gid = %d\n", (int)pw.pw_gid);
		printf("    pw_gecos = \"%s\"\n", str(pw.pw_gecos));
		printf("    pw_dir = \"%s\"\n", str(pw.pw_dir));
		printf("    pw_shell = \"%s\"\n", str(pw.pw_shell));
		printf("}\n");
		caps_struct_free_pointers(&pw, &caps_passwd_struct);
	}
	return (status);
}
