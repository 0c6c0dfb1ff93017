/*
 * fork() by a program that runs LWKT threads on two virtual cpus: the
 * child must have a thread package of its own.
 *
 *   fork_vcpu main|vcpu|dead-cpu [ROUNDS]
 *
 * The parent starts cpu 1 with a server thread that answers messages for
 * the whole run, and runs a thread on each cpu. Each round it forks from
 * main on cpu 0 (`main`) or from a thread on cpu 1 (`vcpu`). The child's
 * only cpu is the forking one: the other's kernel thread is not in it.
 * The child checks that, starts a cpu of its own, runs a thread there and
 * one on the forking cpu, waits for both (main with lwkt_deschedule_self()
 * + lwkt_switch(), as a program without other threads does: the server
 * is not in the child and must not keep main from resuming) and exits 0.
 * A child not done within 5 s is killed and counted as a hang; one that
 * exits otherwise is counted as a failure. After each round the parent
 * checks that its own cpus still work: a message round trip to its server
 * on cpu 1 and a thread run on each cpu.
 *
 * `dead-cpu`: a thread on cpu 1 forks once, and the child asks for a
 * thread on cpu 0, which it does not have: it must abort with a message
 * (the parent reports the signal), not hang.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <sys/wait.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEADLINE_MS	5000
#define CMD_WORK	1
#define CMD_QUIT	2

static thread_t server_td;
static int served, server_bad;

static void
server(void *arg)
{
	lwkt_port_t port = &curthread->td_msgport;
	lwkt_msg_t msg;

	(void)arg;
	rel_mplock();
	for (;;) {
		msg = lwkt_waitport(port, NULL);
		if (msg->ms_cmd == CMD_QUIT) {
			lwkt_replymsg(msg, 0);
			break;
		}
		if (msg->ms_cmd != CMD_WORK || mycpu->gd_cpuid != 1)
			++server_bad;
		msg->u.ms_result = 2 * msg->u.ms_result + 1;
		++served;
		lwkt_replymsg(msg, 0);
	}
}

/* The cpu that forks; threads elsewhere let it fall asleep first. */
static int home;

/* Record the cpu it ran on in *arg. */
static void
note_cpu(void *arg)
{
	if (mycpu->gd_cpuid != home)
		usleep(2000);
	*(int *)arg = mycpu->gd_cpuid;
}

/* Start note_cpu on `cpu` (-1: this one), recording into *where. */
static void
start(int *where, int cpu, const char *name)
{
	thread_t td;

	lwkt_create(note_cpu, where, &td, NULL, TDF_STOPREQ, cpu, "%s", name);
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(td);
}

/*
 * Run note_cpu on the current cpu and on `cpu`; true when both ran where
 * asked. Main in a child waits with lwkt_deschedule_self() +
 * lwkt_switch() (it resumes when no thread is left); other waiters (the
 * parent, whose server lives on) yield until each has run, one at a time
 * (two new threads on two cpus, both waiting for the MP lock while the
 * waiter yields, can leave a debug build asleep with a runnable thread:
 * a separate bug, seen without fork()).
 */
static int
run_two(int cpu, int by_switch)
{
	int me = mycpu->gd_cpuid, here = -1, there = -1;

	start(&here, -1, "local");
	if (by_switch) {
		start(&there, cpu, "remote");
		lwkt_deschedule_self();
		lwkt_switch();
	} else {
		while (here < 0)
			lwkt_yield();
		start(&there, cpu, "remote");
		while (there < 0)
			lwkt_yield();
	}
	return (here == me && there == cpu);
}

/* The child: only the forking cpu, then a new one of its own. */
static int
child(void)
{
	int bad, cpu;

	bad = ncpus != home + 1 || mycpu->gd_cpuid != home;
	if (bad)
		fprintf(stderr, "child: ncpus %d on cpu %d\n", ncpus,
		    mycpu->gd_cpuid);
	cpu = caps_fork_vcpu();
	if (cpu != home + 1 || ncpus != home + 2) {
		fprintf(stderr, "child: new cpu %d, ncpus %d\n", cpu, ncpus);
		bad = 1;
	}
	if (!run_two(cpu, home == 0)) {
		fprintf(stderr, "child: threads did not run where asked\n");
		bad = 1;
	}
	return (bad);
}

/* Wait for pid at most `limit` ms: 0 ok, 1 failed, 2 hung (killed). */
static int
wait_deadline(pid_t pid, int limit, int *status)
{
	int ms;

	for (ms = 0; ms < limit; ++ms) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid)
			return (WIFEXITED(*status) &&
			    WEXITSTATUS(*status) == 0 ? 0 : 1);
		if (r < 0)
			return (1);
		usleep(1000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, status, 0);
	return (2);
}

/* One message round trip to the server on cpu 1. */
static int
ping(int n)
{
	struct lwkt_msg msg;

	lwkt_initmsg(&msg, &curthread->td_msgport, CMD_WORK);
	msg.u.ms_result = n;
	lwkt_domsg(&server_td->td_msgport, &msg);
	return (msg.u.ms_result == 2 * n + 1);
}

static int rounds, hangs, failures, parent_bad, forks_done;

/* Every round, from the current thread (main or one on cpu 1). */
static void
fork_rounds(void *arg)
{
	int i, status, other = mycpu->gd_cpuid == 0 ? 1 : 0;

	if (arg != NULL)	/* a thread, born holding the MP lock */
		rel_mplock();
	home = mycpu->gd_cpuid;
	for (i = 0; i < rounds; ++i) {
		pid_t pid = fork();
		int r;

		if (pid == 0)
			_exit(child());
		r = pid < 0 ? 1 : wait_deadline(pid, DEADLINE_MS, &status);
		if (r == 1) {
			fprintf(stderr, "round %d: child status %#x\n", i,
			    status);
			++failures;
		} else if (r == 2) {
			fprintf(stderr, "round %d: child hung\n", i);
			++hangs;
		}
		if (!ping(i) || !run_two(other, 0))
			++parent_bad;
	}
	forks_done = 1;
}

/* dead-cpu: the child asks for a thread on cpu 0. */
static void
fork_dead_target(void *arg)
{
	thread_t td;
	int status;
	pid_t pid;

	(void)arg;
	rel_mplock();
	pid = fork();
	if (pid == 0) {
		lwkt_create(note_cpu, &status, &td, NULL, 0, 0, "nowhere");
		_exit(0);
	}
	if (wait_deadline(pid, DEADLINE_MS, &status) == 2)
		printf("child hung\n");
	else if (WIFSIGNALED(status))
		printf("child killed by signal %d\n", WTERMSIG(status));
	else
		printf("child exited %d\n", WEXITSTATUS(status));
	forks_done = 1;
}

int
main(int ac, char **av)
{
	int cpu;
	struct lwkt_msg quit;
	thread_t td;

	if (ac < 2 || (strcmp(av[1], "main") != 0 &&
	    strcmp(av[1], "vcpu") != 0 && strcmp(av[1], "dead-cpu") != 0)) {
		fprintf(stderr, "usage: fork_vcpu main|vcpu|dead-cpu [ROUNDS]\n");
		return (2);
	}
	rounds = ac > 2 ? atoi(av[2]) : 50;
	setvbuf(stdout, NULL, _IONBF, 0);
	uthread_init();
	rel_mplock();
	cpu = caps_fork_vcpu();
	lwkt_create(server, NULL, &server_td, NULL, TDF_STOPREQ, cpu, "server");
	server_td->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(server_td);
	if (!run_two(cpu, 0))
		++parent_bad;
	if (strcmp(av[1], "main") == 0) {
		fork_rounds(NULL);
	} else {
		lwkt_create(av[1][0] == 'v' ? fork_rounds : fork_dead_target,
		    av[1], &td, NULL, TDF_STOPREQ, cpu, "forker");
		td->td_flags &= ~TDF_VERBOSE;
		lwkt_schedule(td);
		while (!forks_done)
			lwkt_yield();
		if (av[1][0] == 'd')
			return (0);
	}
	lwkt_initmsg(&quit, &curthread->td_msgport, CMD_QUIT);
	lwkt_domsg(&server_td->td_msgport, &quit);
	printf("%d rounds, %d hangs, %d failures\n", rounds, hangs, failures);
	printf("parent: %d messages served, %d bad\n", served,
	    parent_bad + server_bad);
	return (0);
}
