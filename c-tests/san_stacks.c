/*
 * Stack switches that a sanitizer must be told about (tests/sanitizers.sh,
 * built with -fsanitize=address or -fsanitize=thread).
 *
 *   san_stacks exit      THREADS threads, each leaving with lwkt_exit()
 *                        from a nested frame full of instrumented locals,
 *                        their stacks reused by the next ones; every
 *                        thread first memsets a variable-length local
 *                        array. Correct: prints "exit ok".
 *   san_stacks overflow  one thread writes past a local array (a real
 *                        stack-buffer overflow the sanitizer must report).
 *   san_stacks vcpu      a virtual cpu runs a thread that finishes and one
 *                        that keeps the only pointer to a heap block in a
 *                        local while it waits forever; main returns 0.
 *                        Correct: no LeakSanitizer report, exit 0.
 *   san_stacks leak      a thread on a virtual cpu loses 1000 heap blocks
 *                        (a real leak LeakSanitizer must report).
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS	300

static volatile int finished, sink, never;
static volatile int overflow_at = 16;

static void
use(char *p, int n)
{
	int k, s = 0;

	for (k = 0; k < n; k += 7)
		s += p[k];
	sink += s;
}

__attribute__((noinline)) static void
nested(int depth)
{
	char frame[200];

	memset(frame, depth, sizeof(frame));
	use(frame, sizeof(frame));
	if (depth == 0) {
		++finished;
		lwkt_exit();
	}
	if (!never)
		nested(depth - 1);
	use(frame, sizeof(frame));
}

static void
worker(void *arg)
{
	int n = 64 + (int)((intptr_t)arg % 200);
	char vla[n];

	memset(vla, 1, n);
	use(vla, n);
	nested(2 + (int)((intptr_t)arg % 6));
}

__attribute__((noinline)) static void
overflow(void *arg)
{
	char small[16];
	int i;

	(void)arg;
	for (i = 0; i <= overflow_at; ++i)	/* one byte too far */
		small[i] = (char)i;
	use(small, sizeof(small));
	++finished;
}

static void
quick(void *arg)
{
	(void)arg;
	rel_mplock();
	++finished;
}

static void
holder(void *arg)
{
	char *volatile block = malloc(777);

	(void)arg;
	rel_mplock();
	strcpy(block, "held");
	++finished;
	lwkt_deschedule_self();
	lwkt_switch();
	use(block, 4);
}

static void
leaker(void *arg)
{
	char *volatile block;
	int i;

	(void)arg;
	rel_mplock();
	for (i = 0; i < 1000; ++i) {
		block = malloc(100);
		block[0] = (char)i;
	}
	++finished;
}

static void
wait_for(int n)
{
	while (finished < n)
		lwkt_yield();
}

int
main(int argc, char **argv)
{
	intptr_t i;

	if (argc > 1 && strcmp(argv[1], "overflow") == 0) {
		lwkt_create(overflow, NULL, NULL, NULL, 0, -1, "overflow");
		wait_for(1);
		printf("overflow not seen\n");
		return (0);
	}
	if (argc > 1 && strcmp(argv[1], "vcpu") == 0) {
		int cpu = caps_fork_vcpu();

		lwkt_create(quick, NULL, NULL, NULL, 0, cpu, "quick");
		lwkt_create(holder, NULL, NULL, NULL, 0, cpu, "holder");
		wait_for(2);
		printf("vcpu ok\n");
		return (0);
	}
	if (argc > 1 && strcmp(argv[1], "leak") == 0) {
		lwkt_create(leaker, NULL, NULL, NULL, 0, caps_fork_vcpu(), "leaker");
		wait_for(1);
		printf("leak done\n");
		return (0);
	}
	for (i = 0; i < THREADS; ++i) {
		lwkt_create(worker, (void *)i, NULL, NULL, 0, -1, "w%d", (int)i);
		if (i % 8 == 7)
			wait_for((int)i + 1);
	}
	wait_for(THREADS);
	printf("exit ok\n");
	return (0);
}
