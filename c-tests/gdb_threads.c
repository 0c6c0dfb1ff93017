/*
 * Three named LWKT threads blocked in three different places, for the gdb
 * extension's test (tests/gdb.sh) and the transcripts in
 * docs/debugging.md:
 *
 *   "portwaiter" (cpu 0)  lwkt_waitport() on its own port, nothing sent;
 *   "tokwaiter"  (cpu 1)  lwkt_gettoken() of a token that cpu 0 owns;
 *   "mpwaiter"   (cpu 1)  get_mplock() while main on cpu 0 holds it.
 *
 * Once all three are blocked, main calls all_blocked() (gdb puts its
 * breakpoint there), then lets each go: a message to the port, the MP
 * lock released, the token handed over by switching. Without gdb the
 * program just runs through and prints "done".
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdio.h>
#include <stdlib.h>

static lwkt_token tok;
static thread_t port_td, tok_td, mp_td;
static volatile int mp_started, mp_ready, main_has_mplock;

static void
portwaiter(void *arg)
{
	lwkt_msg_t msg;

	(void)arg;
	msg = lwkt_waitport(&curthread->td_msgport, NULL);
	lwkt_replymsg(msg, 0);
}

static void
tokwaiter(void *arg)
{
	(void)arg;
	rel_mplock();
	lwkt_gettoken(&tok);
	lwkt_reltoken(&tok);
}

static void
mpwaiter(void *arg)
{
	(void)arg;
	rel_mplock();
	__atomic_store_n(&mp_started, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&main_has_mplock, __ATOMIC_ACQUIRE))
		lwkt_switch();
	__atomic_store_n(&mp_ready, 1, __ATOMIC_RELEASE);
	get_mplock();
	rel_mplock();
}

static thread_t
spawn(void (*func)(void *), int cpu, const char *name)
{
	thread_t td;

	lwkt_create(func, NULL, &td, NULL, TDF_STOPREQ, cpu, "%s", name);
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(td);
	return (td);
}

/* Where gdb stops: every thread but main is blocked. */
__attribute__((noinline)) void
all_blocked(void)
{
	__asm__ __volatile__("" ::: "memory");
}

static int
blocked_in(thread_t td, const char *wmesg)
{
	const char *w = __atomic_load_n(&td->td_wmesg, __ATOMIC_ACQUIRE);

	return (w != NULL && w[0] == wmesg[0]);
}

int
main(void)
{
	struct lwkt_msg msg;
	struct lwkt_port reply;
	int cpu;

	uthread_init();
	cpu = caps_fork_vcpu();
	if (cpu != 1) {
		printf("caps_fork_vcpu: %d\n", cpu);
		return (1);
	}
	lwkt_gettoken(&tok);		/* cpu 0 owns the token */

	port_td = spawn(portwaiter, 0, "portwaiter");
	while (!blocked_in(port_td, "waitport"))
		lwkt_yield();

	/* From here on main never switches, so cpu 0 keeps the token. */
	rel_mplock();
	tok_td = spawn(tokwaiter, 1, "tokwaiter");
	mp_td = spawn(mpwaiter, 1, "mpwaiter");
	while (!blocked_in(tok_td, "token") ||
	    !__atomic_load_n(&mp_started, __ATOMIC_ACQUIRE))
		;
	while (!try_mplock())
		;
	__atomic_store_n(&main_has_mplock, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&mp_ready, __ATOMIC_ACQUIRE) ||
	    (__atomic_load_n(&mp_td->td_flags, __ATOMIC_ACQUIRE) & TDF_RUNNING))
		;

	all_blocked();

	lwkt_initport(&reply, curthread);
	lwkt_initmsg(&msg, &reply, 1);
	lwkt_domsg(&port_td->td_msgport, &msg);
	rel_mplock();			/* mpwaiter goes on */
	lwkt_reltoken(&tok);
	lwkt_deschedule_self();		/* back once the others have exited */
	lwkt_switch();
	printf("done\n");
	return (0);
}
