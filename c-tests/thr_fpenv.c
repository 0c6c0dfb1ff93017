/*
 * Floating-point control state (SSE MXCSR and the x87 control word; FPCR
 * on aarch64) belongs to the LWKT thread. Thread A sets the rounding mode
 * toward zero and unmasks the divide-by-zero exception, then yields to a
 * thread it created afterwards (B), which must compute with the state
 * the thread package started with: round to nearest, no trap on 1/0.
 * A must find its own state again after the switch, and main must be
 * unaffected once A has exited.
 */
#define _GNU_SOURCE
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/thread2.h>

#include <fenv.h>
#include <math.h>
#include <stdio.h>

static volatile double minus26 = -2.6, zero = 0.0;
static volatile long double minus26l = -2.6L;

static void
show(const char *who)
{
	printf("%s: round %s, rint(-2.6) %.1f, rintl(-2.6) %.1Lf, 1/0 %s\n",
	    who, fegetround() == FE_TONEAREST ? "nearest" :
	    fegetround() == FE_TOWARDZERO ? "toward zero" : "other",
	    rint(minus26), rintl(minus26l),
#ifdef FE_DIVBYZERO
	    (fegetexcept() & FE_DIVBYZERO) ? "traps" :
#endif
	    (1.0 / zero > 0 ? "inf" : "?"));
}

static void
b_thread(void *arg)
{
	(void)arg;
	show("B (never touched it)");
}

static void
a_thread(void *arg)
{
	thread_t td;

	(void)arg;
	fesetround(FE_TOWARDZERO);
#ifdef FE_DIVBYZERO
	feenableexcept(FE_DIVBYZERO);
#endif
	show("A before yield");
	lwkt_create(b_thread, NULL, &td, NULL, TDF_STOPREQ, -1, "B");
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(td);
	lwkt_yield();
	show("A after yield");
}

int
main(void)
{
	thread_t td;

	uthread_init();
	show("main");
	lwkt_create(a_thread, NULL, &td, NULL, TDF_STOPREQ, -1, "A");
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(td);
	lwkt_deschedule_self();
	lwkt_switch();
	show("main after A exited");
	return (0);
}
