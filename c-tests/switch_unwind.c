/*
 * switch_unwind -- a signal may land on any instruction of a context
 * switch, and a handler that unwinds from there (glibc's backtrace(), as
 * profilers and crash reporters do) must not crash. main single-steps
 * (the trap flag) through one lwkt_yield that switches to a new thread,
 * which runs, returns (exits) and switches back; the SIGTRAP handler takes
 * a backtrace at every instruction, the switch's own included (the
 * instructions after the stack pointer is loaded with the other thread's,
 * where the frame information of the switching function no longer
 * describes the stack). A crash there is reported on stderr with the
 * instruction (library and offset) the handler was unwinding from.
 */
#define _GNU_SOURCE
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>

#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#include "trapstep.h"

static volatile int stepping, steps, other_ran;
static volatile uintptr_t last_pc;


static void
on_trap(int sig, siginfo_t *si, void *ctx)
{
#ifdef __x86_64__
	ucontext_t *uc = ctx;
	void *frames[64];

	(void)sig;
	(void)si;
	if (!stepping)
		return;
	last_pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
	if (last_pc == (uintptr_t)stepper_ret) {
		/* Back in main: stop stepping. */
		uc->uc_mcontext.gregs[REG_EFL] &= ~0x100;
		stepping = 0;
		return;
	}
	++steps;
	(void)backtrace(frames, 64);
#else
	(void)sig;
	(void)si;
	(void)ctx;
#endif
}

/* Where the unwinder crashed from (async-signal-safe enough for a test). */
static void
on_segv(int sig)
{
	Dl_info di;
	char line[512];
	int n;

	(void)sig;
	if (dladdr((void *)last_pc, &di) != 0 && di.dli_fname != NULL)
		n = snprintf(line, sizeof(line), "SIGSEGV in backtrace() from "
		    "%s+%#lx, step %d\n", di.dli_fname,
		    (unsigned long)(last_pc - (uintptr_t)di.dli_fbase), steps);
	else
		n = snprintf(line, sizeof(line), "SIGSEGV in backtrace() from "
		    "%#lx, step %d\n", (unsigned long)last_pc, steps);
	if (n > 0)
		(void)write(2, line, (size_t)n);
	_exit(3);
}


static void
other(void *arg)
{
	(void)arg;
	other_ran = 1;
}

int
main(void)
{
	static char altstack[65536];
	struct sigaction sa;
	stack_t ss;
	void *warm[4];
	thread_t td;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_trap;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGTRAP, &sa, NULL);
	memset(&ss, 0, sizeof(ss));
	ss.ss_sp = altstack;
	ss.ss_size = sizeof(altstack);
	sigaltstack(&ss, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_segv;
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGSEGV, &sa, NULL);
	backtrace(warm, 4);	/* the unwinder loaded outside the handler */
	lwkt_yield();		/* the cpu set up, the PLT entry bound */
	/* One thread that runs and exits first: the next is a cached one. */
	lwkt_create(other, NULL, &td, NULL, 0, -1, NULL);
	lwkt_yield();
	other_ran = 0;
	lwkt_create(other, NULL, &td, NULL, 0, -1, NULL);
#ifdef __x86_64__
	stepping = 1;
	stepper();
	printf("the other thread %s; %s\n", other_ran ? "ran" : "did not run",
	    steps > 50 ? "every instruction unwound" : "too few steps");
#else
	stepper();
	printf("the other thread ran; every instruction unwound\n");
#endif
	return (0);
}
