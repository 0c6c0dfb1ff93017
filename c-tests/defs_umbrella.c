/*
 * defs_umbrella -- everything through <libcaps/defs.h> alone: no other
 * header of the library or of the system is included.
 *
 * main (curthread == &main_td) starts a second virtual cpu and a server
 * thread on it that owns a message port; it sends the server ROUNDS
 * messages with lwkt_domsg(), each carrying a number in a block from the
 * slab allocator, which the server doubles, frees (a free from another
 * cpu) and replies to. Then the malloc type's statistics must be back to
 * zero. Last, a structure goes through caps_encode()/caps_decode().
 */
#include <libcaps/defs.h>

#define ROUNDS		1000
#define CMD_DOUBLE	1

MALLOC_DEFINE(M_DEFS, "defs", "defs_umbrella test blocks");

struct numbermsg {
	struct lwkt_msg	msg;
	long		*number;	/* slab block, freed by the server */
	long		result;
};

static struct lwkt_port server_port;
static int server_cpu = -1;

static void
server(void *arg)
{
	struct numbermsg *m;

	(void)arg;
	server_cpu = mycpu->gd_cpuid;
	for (;;) {
		m = (struct numbermsg *)lwkt_waitport(&server_port, NULL);
		KKASSERT(m != NULL && m->msg.ms_cmd == CMD_DOUBLE);
		m->result = *m->number * 2;
		slab_free(m->number, M_DEFS);
		m->number = NULL;
		lwkt_replymsg(&m->msg, 0);
	}
}

struct point {
	int	x;
	long	y;
	char	*name;
	uint8_t	tag;
};

static const struct caps_label point_labels[] = {
	{ offsetof(struct point, x), CAPS_IN_INT_T, 1, 0, NULL },
	{ offsetof(struct point, y), CAPS_IN_LONG_T, 2, 0, NULL },
	{ offsetof(struct point, name), CAPS_IN_STRPTR_T, 3, 0, NULL },
	{ offsetof(struct point, tag), CAPS_IN_UINT8_T, 4, 0, NULL },
	{ -1, 0, 0, 0, 0, NULL }
};

static const struct caps_struct point_struct = {
	(char *)"point", point_labels
};

static int
encoder(void)
{
	struct point in = { -7, 1234567890123L, (char *)"a b/c", 200 };
	struct point out;
	char buf[256];
	int error = -1;
	int n;

	n = caps_encode(buf, (int)sizeof(buf), &in, &point_struct);
	if (n <= 0 || n >= (int)sizeof(buf))
		return (1);
	printf("encoded %d bytes: %s\n", n, buf);
	memset(&out, 0, sizeof(out));
	n = caps_decode(buf, n, &out, &point_struct, &error);
	printf("decoded %d bytes error %d: x %d y %ld name \"%s\" tag %d\n",
	    n, error, out.x, out.y, out.name ? out.name : "(null)", out.tag);
	caps_struct_free_pointers(&out, &point_struct);
	return (out.name != NULL || error != 0);
}

int
main(void)
{
	struct lwkt_port replyport;
	struct numbermsg m;
	thread_t td;
	long inuse = 0, memuse = 0, sum = 0;
	int cpu, i, bad = 0;

	DBPRINTF(("only with -DCAPS_DEBUG\n"));
	uthread_init();
	printf("main is main_td: %s\n", curthread == &main_td ? "yes" : "no");

	cpu = caps_fork_vcpu();
	printf("caps_fork_vcpu: %d, ncpus %d\n", cpu, ncpus);
	lwkt_create(server, NULL, &td, NULL, TDF_STOPREQ, cpu, "server");
	td->td_flags &= ~TDF_VERBOSE;
	lwkt_initport(&server_port, td);
	lwkt_schedule(td);

	lwkt_initport(&replyport, curthread);
	for (i = 0; i < ROUNDS; ++i) {
		lwkt_initmsg(&m.msg, &replyport, CMD_DOUBLE);
		m.number = slab_malloc(sizeof(*m.number), M_DEFS, M_ZERO);
		*m.number = i;
		if (lwkt_domsg(&server_port, &m.msg) != 0 || m.result != 2L * i)
			++bad;
		sum += m.result;
	}
	printf("%d messages to cpu %d: sum %ld, %d wrong\n", ROUNDS,
	    server_cpu, sum, bad);

	for (i = 0; i < SMP_MAXCPU; ++i) {
		inuse += M_DEFS->ks_inuse[i];
		memuse += M_DEFS->ks_memuse[i];
	}
	printf("slab '%s': %lld calls, %ld in use, %ld bytes\n",
	    M_DEFS->ks_shortdesc, (long long)M_DEFS->ks_calls, inuse, memuse);

	crit_enter();
	printf("critical section: %d\n", IN_CRITICAL_SECT(curthread) ? 1 : 0);
	crit_exit();

	bad += encoder();
	printf("%s\n", bad ? "FAILED" : "ok");
	exit(bad ? 1 : 0);
}
