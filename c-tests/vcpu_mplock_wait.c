/*
 * The most common MP-lock mistake: main forgets rel_mplock(), so a thread
 * it starts on a virtual cpu (born holding the MP lock) cannot run until
 * main lets the lock go. Here main lets it go after 200 ms, and the
 * program completes. With LIBCAPS_DEBUG=1 the wait is traced: one line
 * naming the waiting thread and the cpu that holds the lock
 * (tests/trace.sh).
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/thread2.h>

#include <stdio.h>
#include <unistd.h>

static volatile int ran;

static void
newborn(void *arg)
{
	(void)arg;
	printf("newborn ran on cpu %d\n", mycpu->gd_cpuid);
	ran = 1;
}

int
main(void)
{
	thread_t td;
	int cpu;

	setvbuf(stdout, NULL, _IONBF, 0);
	cpu = caps_fork_vcpu();
	lwkt_create(newborn, NULL, &td, NULL, 0, cpu, "newborn");
	td->td_flags &= ~TDF_VERBOSE;
	/* forgot rel_mplock(): the newborn waits for the MP lock */
	usleep(200000);
	printf("main releases the MP lock\n");
	rel_mplock();
	while (!ran)
		lwkt_yield();
	printf("done\n");
	return (0);
}
