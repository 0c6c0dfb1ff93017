/*
 * quiet.h -- start an LWKT thread without its "kthread ... has exited"
 * line: created stopped, TDF_VERBOSE cleared, then scheduled. For the
 * C tests whose output is compared line by line.
 */
#ifndef QUIET_H
#define QUIET_H

#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/thread2.h>

static thread_t
start_quiet(void (*fn)(void *), void *arg, int cpu, const char *name)
{
	thread_t td;

	lwkt_create(fn, arg, &td, NULL, TDF_STOPREQ, cpu, "%s", name);
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(td);
	return (td);
}

#endif
