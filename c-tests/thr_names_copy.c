/*
 * lwkt_create() and lwkt_set_comm() copy a name without a conversion in
 * its first MAXCOMLEN bytes instead of formatting it: the whole td_comm
 * (MAXCOMLEN + 1 bytes, zeroes after the name) must be what vsnprintf
 * gives, for names of every length up to well past MAXCOMLEN, with a
 * '%' sequence ("%%", "%s", "%%%%", a lone '%' ending the name) at every
 * position, and for a NULL name (all zeroes).
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/thread2.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define LONGEST	40

static int differences;

static void
nothing(void *arg)
{
	(void)arg;
}

/* What the formatted path gives: vsnprintf into a zeroed name. */
static void
formatted(char *out, const char *fmt, ...)
{
	va_list ap;

	memset(out, 0, MAXCOMLEN + 1);
	va_start(ap, fmt);
	vsnprintf(out, MAXCOMLEN + 1, fmt, ap);
	va_end(ap);
}

static void
compare(const char *what, const char *name, const char *got)
{
	char want[MAXCOMLEN + 1];

	formatted(want, name, "S", 7);
	if (memcmp(want, got, sizeof(want)) != 0) {
		differences++;
		printf("%s \"%s\": got \"%.*s\", want \"%.*s\"\n", what, name,
		    MAXCOMLEN + 1, got, MAXCOMLEN + 1, want);
	}
}

static void
zero(const char *what, const char *got)
{
	int i;

	for (i = 0; i <= MAXCOMLEN; i++) {
		if (got[i] != 0) {
			differences++;
			printf("%s NULL: byte %d is %d\n", what, i, got[i]);
			return;
		}
	}
}

/* Name td and a new thread with name (a format taking "S" at most). */
static void
try_name(thread_t td, const char *name)
{
	thread_t t;

	/* A longer name first, which the new one must wipe. */
	lwkt_set_comm(td, "%s", "ZZZZZZZZZZZZZZZZZZZZZZZZ");
	lwkt_set_comm(td, name, "S", 7);
	compare("lwkt_set_comm", name, td->td_comm);
	lwkt_create(nothing, NULL, &t, NULL, TDF_STOPREQ, -1, name, "S", 7);
	compare("lwkt_create", name, t->td_comm);
	lwkt_free_thread(t);
}

int
main(void)
{
	static const char *const seqs[] = { "%%", "%s", "%%%%", "%" };
	char name[LONGEST + 8];
	thread_t td, t;
	size_t len, pos, k, i, l;

	uthread_init();
	lwkt_create(nothing, NULL, &td, NULL, TDF_STOPREQ, -1, "x");
	for (len = 0; len <= LONGEST; len++) {
		memset(name, 0, sizeof(name));
		for (i = 0; i < len; i++)
			name[i] = 'a' + i % 26;
		try_name(td, name);
		for (pos = 0; pos <= len; pos++) {
			for (k = 0; k < sizeof(seqs) / sizeof(seqs[0]); k++) {
				l = strlen(seqs[k]);
				memset(name, 0, sizeof(name));
				for (i = 0; i < len; i++)
					name[i] = 'a' + i % 26;
				memcpy(name + pos, seqs[k], l);
				if (seqs[k][1] == '\0')
					name[pos + 1] = '\0';
				try_name(td, name);
			}
		}
	}
	lwkt_set_comm(td, NULL);
	zero("lwkt_set_comm", td->td_comm);
	lwkt_create(nothing, NULL, &t, NULL, TDF_STOPREQ, -1, NULL);
	zero("lwkt_create", t->td_comm);
	lwkt_free_thread(t);
	printf("names compared, %d differences\n", differences);
	return (differences != 0);
}
