/*
 * Stack overflow of an LWKT thread is reported, and other faults are left
 * to whoever handled them before. Compiled with
 * -fno-stack-clash-protection (no probing of large frames).
 *
 *   recurse       thread "worker3" recurses without bound: one line
 *                 naming it, its stack size and the fault address, then
 *                 abort (SIGABRT)
 *   recurse-vcpu  the same on virtual cpu 1
 *   recurse-256k  the same with LIBCAPS_STACK_SIZE=256K (set before the
 *                 library starts): the report says 256 KiB
 *   recurse-noguard  the same as on a kernel without MADV_GUARD_INSTALL
 *                 (noguard.h), where each stack has a mapping of its own
 *   vla           a thread near the bottom of its stack declares a
 *                 60 KiB variable-length array and writes its first
 *                 byte: that must fault in its own guard (reported as
 *                 above), not land in the stack of the thread mapped
 *                 below it
 *   array-200k    thread "arrays" declares a 200 KiB local array on its
 *   array-512k    64 KiB stack (512 KiB) and clears it: the frame moves
 *                 the stack pointer past the stack and its guard in one
 *                 go, so the fault lies far below the guard; it is still
 *                 reported as above
 *   null-handler  the program's own SIGSEGV handler, installed before
 *                 the library starts, catches a NULL write made by an
 *                 LWKT thread
 *   null-default  without a handler a NULL write still kills the process
 *                 with SIGSEGV, and the library says nothing
 *   ignored-raise SIGSEGV ignored before the library starts: a SIGSEGV
 *                 the thread sends itself is ignored, and a later
 *                 overflow of that thread is still reported
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/thread2.h>

#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "noguard.h"

static volatile int stop, vla_size = 60 * 1024;
static volatile int *volatile nullp;
static volatile char *start_sp;
static sigjmp_buf env;

static int
deep(int n)
{
	volatile char buf[512];

	buf[0] = (char)n;
	if (stop)
		return (0);
	return (deep(n + 1) + buf[0]);
}

static void
recurser(void *arg)
{
	(void)arg;
	printf("%d\n", deep(0));
}

static void
big_frame(void)
{
	char vla[vla_size];
	volatile char *p = vla;

	p[0] = 'X';
}

/* Go down until about 8.5 KiB of the stack are used, then jump. */
static void
descend(void)
{
	volatile char here[256];

	here[0] = 0;
	if (start_sp - here < 8 * 1024 + 512)
		descend();
	else
		big_frame();
}

static void
jumper(void *arg)
{
	volatile char top;

	(void)arg;
	start_sp = &top;
	descend();
	printf("jumper survived its 60 KiB frame\n");
}

#define ARRAY_THREAD(kib)						\
static void								\
array_##kib(void *arg)							\
{									\
	volatile char a[kib * 1024];					\
									\
	(void)arg;							\
	memset((char *)a, 1, sizeof(a));				\
	printf("a %d KiB array fitted: %d\n", kib, a[100]);		\
}
ARRAY_THREAD(200)
ARRAY_THREAD(512)

static void
neighbour(void *arg)
{
	volatile unsigned char canary[1024];
	int i, bad = 0;

	(void)arg;
	for (i = 0; i < 1024; ++i)
		canary[i] = 0xa5;
	lwkt_yield();
	for (i = 0; i < 1024; ++i)
		bad += canary[i] != 0xa5;
	printf("neighbour: %d bytes of its stack overwritten\n", bad);
}

static void
raise_then_recurse(void *arg)
{
	raise(SIGSEGV);
	printf("raised SIGSEGV ignored\n");
	recurser(arg);
}

static void
null_writer(void *arg)
{
	(void)arg;
	if (sigsetjmp(env, 1) == 0) {
		*nullp = 1;
		printf("NULL write did not fault\n");
	} else {
		printf("own handler caught the NULL write\n");
	}
}

static void
on_segv(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)ctx;
	if (si->si_addr == NULL)
		siglongjmp(env, 1);
	_exit(3);
}

static thread_t
create(void (*func)(void *), int cpu, const char *name)
{
	thread_t td;

	lwkt_create(func, NULL, &td, NULL, TDF_STOPREQ, cpu, "%s", name);
	td->td_flags &= ~TDF_VERBOSE;
	return (td);
}

static void
spawn(void (*func)(void *), int cpu, const char *name)
{
	lwkt_schedule(create(func, cpu, name));
}

int
main(int ac, char **av)
{
	const char *mode = ac > 1 ? av[1] : "recurse";

	setvbuf(stdout, NULL, _IONBF, 0);
	if (strcmp(mode, "recurse") == 0) {
		spawn(recurser, -1, "worker3");
	} else if (strcmp(mode, "recurse-noguard") == 0) {
		if (hide_guard_advice() != 0)
			return (1);
		setenv("LIBCAPS_DEBUG", "1", 1);	/* the layout line */
		spawn(recurser, -1, "worker3");
	} else if (strcmp(mode, "recurse-256k") == 0) {
		setenv("LIBCAPS_STACK_SIZE", "256K", 1);
		spawn(recurser, -1, "worker3");
	} else if (strcmp(mode, "recurse-vcpu") == 0) {
		int cpu = caps_fork_vcpu();

		rel_mplock();
		spawn(recurser, cpu, "worker3");
	} else if (strcmp(mode, "vla") == 0) {
		/*
		 * Stacks are mapped top down: the neighbour's, mapped second,
		 * lies below the jumper's. The neighbour runs first.
		 */
		thread_t j = create(jumper, -1, "jumper");

		lwkt_schedule(create(neighbour, -1, "neighbour"));
		lwkt_schedule(j);
	} else if (strcmp(mode, "ignored-raise") == 0) {
		signal(SIGSEGV, SIG_IGN);
		spawn(raise_then_recurse, -1, "worker3");
	} else if (strcmp(mode, "array-200k") == 0) {
		spawn(array_200, -1, "arrays");
	} else if (strcmp(mode, "array-512k") == 0) {
		spawn(array_512, -1, "arrays");
	} else if (strncmp(mode, "null-", 5) == 0) {
		if (strcmp(mode, "null-handler") == 0) {
			struct sigaction sa;

			memset(&sa, 0, sizeof(sa));
			sa.sa_sigaction = on_segv;
			sa.sa_flags = SA_SIGINFO;
			sigaction(SIGSEGV, &sa, NULL);
		}
		spawn(null_writer, -1, "writer");
	} else {
		fprintf(stderr, "usage: thr_overflow MODE\n");
		return (2);
	}
	lwkt_deschedule_self();
	lwkt_switch();
	printf("main: done\n");
	return (0);
}
