/*
 * The blocking entry points (lwkt_switch, lwkt_yield, lwkt_domsg,
 * lwkt_waitport, lwkt_waitmsg) as a C caller sees them across a real
 * switch to another thread that clobbers every register: the callee-saved
 * registers (rbx, rbp, r12-r15) come back as they were, the return value
 * comes back whole (a message pointer, an error code), and a waitport
 * vector called from inside them is entered on a 16-byte aligned stack
 * (rsp + 8 a multiple of 16 at its first instruction). Called from main,
 * from a thread of lwkt_create and from a thread of a vcpu.
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <sys/caps.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define ROUNDS	200

/* Set by the assembly below. */
int gate_regs_bad, gate_misaligned, gate_probes;
void *(*gate_real_waitport)(lwkt_port_t, lwkt_msg_t);

#ifdef __x86_64__
/*
 * uintptr_t call_checked(fn, a0, a1): fn(a0, a1) with known values in
 * every callee-saved register, counting in gate_regs_bad a call that
 * changed one. align_probe: a waitport vector that counts a misaligned
 * entry and goes on to gate_real_waitport.
 */
__asm__(
	".text\n"
	".globl call_checked\n"
	".type call_checked, @function\n"
	"call_checked:\n"
	"	push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
	"	sub $8, %rsp\n"
	"	mov %rdi, %rax\n mov %rsi, %rdi\n mov %rdx, %rsi\n"
	"	movabs $0x1111111111111101, %rbx\n"
	"	movabs $0x2222222222222202, %rbp\n"
	"	movabs $0x3333333333333303, %r12\n"
	"	movabs $0x4444444444444404, %r13\n"
	"	movabs $0x5555555555555505, %r14\n"
	"	movabs $0x6666666666666606, %r15\n"
	"	call *%rax\n"
	"	xor %ecx, %ecx\n"
	"	movabs $0x1111111111111101, %r8\n cmp %r8, %rbx\n setne %cl\n add %ecx, gate_regs_bad(%rip)\n"
	"	movabs $0x2222222222222202, %r8\n cmp %r8, %rbp\n setne %cl\n add %ecx, gate_regs_bad(%rip)\n"
	"	movabs $0x3333333333333303, %r8\n cmp %r8, %r12\n setne %cl\n add %ecx, gate_regs_bad(%rip)\n"
	"	movabs $0x4444444444444404, %r8\n cmp %r8, %r13\n setne %cl\n add %ecx, gate_regs_bad(%rip)\n"
	"	movabs $0x5555555555555505, %r8\n cmp %r8, %r14\n setne %cl\n add %ecx, gate_regs_bad(%rip)\n"
	"	movabs $0x6666666666666606, %r8\n cmp %r8, %r15\n setne %cl\n add %ecx, gate_regs_bad(%rip)\n"
	"	add $8, %rsp\n"
	"	pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n"
	"	ret\n"
	".size call_checked, .-call_checked\n"
	".globl align_probe\n"
	".type align_probe, @function\n"
	"align_probe:\n"
	"	incl gate_probes(%rip)\n"
	"	lea 8(%rsp), %rax\n"
	"	test $15, %al\n"
	"	jz 1f\n"
	"	incl gate_misaligned(%rip)\n"
	"1:	jmp *gate_real_waitport(%rip)\n"
	".size align_probe, .-align_probe\n");
uintptr_t call_checked(void *fn, void *a0, void *a1);
void *align_probe(lwkt_port_t, lwkt_msg_t);
#define CALL2(fn, a, b) call_checked((void *)(fn), (void *)(a), (void *)(b))
#define PROBE align_probe
#else
#define CALL2(fn, a, b) ((uintptr_t(*)(void *, void *))(fn))((void *)(a), (void *)(b))
#define PROBE gate_real_waitport
#endif

static thread_t server_td;
static volatile int stop;

/* Replies to each message with its command as the error. */
static void
server(void *arg)
{
	lwkt_msg_t msg;

	(void)arg;
	while (!stop) {
		msg = lwkt_waitport(&curthread->td_msgport, NULL);
		if (msg->ms_cmd == 0)
			break;
		lwkt_replymsg(msg, msg->ms_cmd);
	}
}

/* Runs between the others' switches, with every register its own. */
static void
clobber(void *arg)
{
	volatile uint64_t sink = 0;

	(void)arg;
	while (!stop) {
#ifdef __x86_64__
		__asm__ volatile("movabs $0xdeadbeefdeadbeef, %%rax\n"
		    "mov %%rax, %%rbx\n mov %%rax, %%r12\n mov %%rax, %%r13\n"
		    "mov %%rax, %%r14\n mov %%rax, %%r15\n"
		    ::: "rax", "rbx", "r12", "r13", "r14", "r15", "memory");
#endif
		sink++;
		lwkt_yield();
	}
}

/* Let a thread made stopped run, without its "has exited" line. */
static void
run_quietly(thread_t td)
{
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_schedule(td);
}

static int
switch_self(void *a, void *b)
{
	(void)a;
	(void)b;
	lwkt_schedule_self();
	lwkt_switch();
	return (0);
}

static int
yield(void *a, void *b)
{
	(void)a;
	(void)b;
	lwkt_yield();
	return (0);
}

/* One round of every entry point; returns the number of wrong results. */
static int
round_trip(const char *who, int i)
{
	struct lwkt_port rport;
	struct lwkt_msg msg;
	int bad = 0;
	uintptr_t r;

	lwkt_initport(&rport, curthread);
	gate_real_waitport = rport.mp_waitport;
	rport.mp_waitport = PROBE;

	CALL2(yield, 0, 0);
	CALL2(lwkt_yield, 0, 0);
	CALL2(switch_self, 0, 0);

	lwkt_initmsg(&msg, &rport, 1000 + i);
	r = CALL2(lwkt_domsg, &server_td->td_msgport, &msg);
	if ((int)r != 1000 + i)
		bad++;

	lwkt_initmsg(&msg, &rport, 2000 + i);
	lwkt_sendmsg(&server_td->td_msgport, &msg);
	r = CALL2(lwkt_waitmsg, &msg, 0);
	if ((int)r != 2000 + i)
		bad++;

	lwkt_initmsg(&msg, &rport, 3000 + i);
	lwkt_sendmsg(&server_td->td_msgport, &msg);
	r = CALL2(lwkt_waitport, &rport, &msg);
	if (r != (uintptr_t)&msg || msg.ms_error != 3000 + i)
		bad++;

	lwkt_initmsg(&msg, &rport, 4000 + i);
	lwkt_sendmsg(&server_td->td_msgport, &msg);
	r = CALL2(lwkt_waitport, &rport, 0);
	if (r != (uintptr_t)&msg || msg.ms_error != 4000 + i)
		bad++;
	if (bad)
		fprintf(stderr, "%s round %d: %d wrong results\n", who, i, bad);
	return (bad);
}

static int wrong;
static int done;	/* set by the worker, which may be on another cpu */

static void
worker(void *arg)
{
	int i;

	for (i = 0; i < ROUNDS; ++i)
		wrong += round_trip((const char *)arg, i);
	__atomic_store_n(&done, 1, __ATOMIC_RELEASE);
}

static void
report(const char *who)
{
	printf("%s: %d wrong results, %d registers changed, %s probes, "
	    "%d misaligned\n", who, wrong, gate_regs_bad,
	    gate_probes >= 4 * ROUNDS ? "all" : "missing", gate_misaligned);
	wrong = gate_regs_bad = gate_probes = gate_misaligned = 0;
}

int
main(void)
{
	struct lwkt_msg quit;
	thread_t td;
	int i;

	uthread_init();
	lwkt_create(server, NULL, &server_td, NULL, TDF_STOPREQ, -1, "server");
	run_quietly(server_td);
	lwkt_create(clobber, NULL, &td, NULL, TDF_STOPREQ, -1, "clobber");
	run_quietly(td);

	for (i = 0; i < ROUNDS; ++i)
		wrong += round_trip("main", i);
	report("main");

	__atomic_store_n(&done, 0, __ATOMIC_RELAXED);
	lwkt_create(worker, "created", &td, NULL, TDF_STOPREQ, -1, "worker");
	run_quietly(td);
	while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE))
		lwkt_yield();
	report("created thread");

	/* A thread of a second cpu, its messages crossing to this one. */
	__atomic_store_n(&done, 0, __ATOMIC_RELAXED);
	lwkt_create(worker, "vcpu", &td, NULL, TDF_STOPREQ, caps_fork_vcpu(),
	    "vworker");
	run_quietly(td);
	while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE))
		lwkt_yield();
	report("vcpu thread");

	stop = 1;
	lwkt_initmsg(&quit, &curthread->td_msgport, 0);
	lwkt_sendmsg(&server_td->td_msgport, &quit);
	lwkt_yield();
	lwkt_yield();
	return (0);
}
