/*
 * Thread names given to lwkt_create() and lwkt_set_comm(): a plain name
 * is taken as it is, a format is formatted, and either is cut to
 * MAXCOMLEN (16) bytes; a NULL name is empty.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdio.h>

static void
nothing(void *arg)
{
	(void)arg;
}

static void
show(const char *what, thread_t td)
{
	printf("%s [%s]\n", what, td->td_comm);
}

int
main(void)
{
	const char *empty = "";	/* not a literal: -Wformat-zero-length */
	thread_t td;

	uthread_init();
	lwkt_create(nothing, NULL, &td, NULL, TDF_STOPREQ, -1, "plain");
	show("plain", td);
	lwkt_set_comm(td, "a-very-long-thread-name");
	show("long", td);
	lwkt_set_comm(td, "w%d", 7);
	show("format", td);
	lwkt_set_comm(td, "100%% sure");
	show("percent", td);
	lwkt_set_comm(td, "sixteen-chars-xx%d", 5);
	show("format past 16", td);
	lwkt_set_comm(td, empty);
	show("empty", td);
	lwkt_set_comm(td, NULL);
	show("null", td);
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(td);
	lwkt_create(nothing, NULL, &td, NULL, TDF_STOPREQ, -1, "%s-%03d", "srv", 42);
	show("create format", td);
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(td);
	lwkt_create(nothing, NULL, &td, NULL, TDF_STOPREQ, -1,
	    "exactly-sixteen!");
	show("create 16", td);
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(td);
	lwkt_deschedule_self();
	lwkt_switch();
	printf("done\n");
	return (0);
}
