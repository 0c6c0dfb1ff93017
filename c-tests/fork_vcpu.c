/*
 * fork() by a program that runs LWKT threads on two virtual cpus: the
 * child must have a thread package of its own.
 *
 *   fork_vcpu [ROUNDS]
 *
 * The parent starts cpu 1 with a server thread that answers messages for
 * the whole run, and runs a thread on each cpu. Each round it forks; the
 * child (whose only cpu is cpu 0: cpu 1's kernel thread is not in it)
 * checks that it has one cpu, starts a cpu of its own, runs a thread
 * there and one on cpu 0, waits for both with lwkt_deschedule_self() +
 * lwkt_switch() and exits 0. A child not done within 5 s is killed and
 * counted as a hang; one that exits otherwise is counted as a failure.
 * The server, a thread of the parent's cpu 1, is not in the child: it
 * must not keep the child's main from resuming. After each round the
 * parent checks that its own cpus still work: a
 * message round trip to its server on cpu 1 and a thread run there.
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

/* Record the cpu it ran on in *arg; remote ones let cpu 0 fall asleep. */
static void
note_cpu(void *arg)
{
	if (mycpu->gd_cpuid != 0)
		usleep(2000);
	*(int *)arg = mycpu->gd_cpuid;
}

/*
 * Run note_cpu on cpu 0 and on `cpu`; true when both ran where asked.
 * The child waits as a program without other threads does (main resumes
 * when no thread is left); the parent, whose server lives on, by
 * yielding until both have run.
 */
static int
run_two(int cpu, int by_switch)
{
	int here = -1, there = -1;
	thread_t td;

	lwkt_create(note_cpu, &here, &td, NULL, TDF_STOPREQ, 0, "local");
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(td);
	lwkt_create(note_cpu, &there, &td, NULL, TDF_STOPREQ, cpu, "remote");
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(td);
	if (by_switch) {
		lwkt_deschedule_self();
		lwkt_switch();
	} else {
		while (here < 0 || there < 0)
			lwkt_yield();
	}
	return (here == 0 && there == cpu);
}

/* The child: one cpu, then a new one of its own. */
static int
child(void)
{
	int bad, cpu;

	bad = ncpus != 1 || mycpu->gd_cpuid != 0;
	cpu = caps_fork_vcpu();
	bad |= cpu != 1 || ncpus != 2;
	bad |= !run_two(cpu, 1);
	return (bad);
}

/* Wait for pid at most `limit` ms: 0 ok, 1 failed, 2 hung (killed). */
static int
wait_deadline(pid_t pid, int limit)
{
	int status, ms;

	for (ms = 0; ms < limit; ++ms) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return (WIFEXITED(status) && WEXITSTATUS(status) == 0 ?
			    0 : 1);
		if (r < 0)
			return (1);
		usleep(1000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
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

int
main(int ac, char **av)
{
	int rounds = ac > 1 ? atoi(av[1]) : 50;
	int i, cpu, hangs = 0, failures = 0, parent_bad = 0;
	struct lwkt_msg quit;

	setvbuf(stdout, NULL, _IONBF, 0);
	uthread_init();
	rel_mplock();
	cpu = caps_fork_vcpu();
	lwkt_create(server, NULL, &server_td, NULL, TDF_STOPREQ, cpu, "server");
	server_td->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(server_td);
	if (!run_two(cpu, 0))
		++parent_bad;
	for (i = 0; i < rounds; ++i) {
		pid_t pid = fork();
		int r;

		if (pid == 0)
			_exit(child());
		r = pid < 0 ? 1 : wait_deadline(pid, DEADLINE_MS);
		if (r == 1)
			++failures;
		else if (r == 2)
			++hangs;
		if (!ping(i) || !run_two(cpu, 0))
			++parent_bad;
	}
	lwkt_initmsg(&quit, &curthread->td_msgport, CMD_QUIT);
	lwkt_domsg(&server_td->td_msgport, &quit);
	printf("%d rounds, %d hangs, %d failures\n", rounds, hangs, failures);
	printf("parent: %d messages served, %d bad\n", served,
	    parent_bad + server_bad);
	return (0);
}
