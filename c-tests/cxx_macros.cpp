/*
 * cxx_macros -- every macro and inline function of the installed headers,
 * used from C++ (tests/c_tests.rs compiles this as C++11, 14, 17 and 20
 * with -Wall -Wextra -Werror -pedantic and runs it).
 */
#include <libcaps/defs.h>

MALLOC_DECLARE(M_CXX);
MALLOC_DEFINE(M_CXX, "cxx", "C++ test blocks");

struct pair {
	int	a;
	char	*s;
};

static const struct caps_label pair_labels[] = {
	{ offsetof(struct pair, a), CAPS_IN_INT_T, 1, 0, NULL },
	{ offsetof(struct pair, s), CAPS_IN_STRPTR_T, 2, 0, NULL },
	{ -1, 0, 0, 0, 0, NULL }
};

static const struct caps_struct pair_struct = {
	const_cast<char *>("pair"), pair_labels
};

/* A port whose reply vector counts replies (C++ function, C linkage not needed). */
static int replies;

static void
count_reply(lwkt_port_t port, lwkt_msg_t msg)
{
	(void)port;
	msg->ms_flags |= MSGF_DONE | MSGF_REPLY;
	++replies;
}

int
main()
{
	DBPRINTF(("not printed\n"));
	uthread_init();
	KASSERT(curthread == &main_td, ("curthread %p", static_cast<void *>(curthread)));
	KKASSERT(mycpu->gd_cpuid == 0);

	/* thread2.h */
	crit_enter();
	crit_enter_quick(curthread);
	int saved = crit_panic_save();
	crit_panic_restore(saved);
	printf("in critical section: %d\n", IN_CRITICAL_SECT(curthread) ? 1 : 0);
	crit_exit_noyield(curthread);
	crit_exit_quick(curthread);
	crit_enter();
	crit_exit();
	printf("runnable: %d\n", lwkt_runnable());

	/* msgport2.h, on a port of our own */
	struct lwkt_port port;
	struct lwkt_port rport;
	struct lwkt_msg msg;
	lwkt_initport(&port, curthread);
	lwkt_initport(&rport, curthread);
	rport.mp_replyport = count_reply;
	lwkt_initmsg(&msg, &rport, 7);
	lwkt_reinitmsg(&msg, &rport);
	msg.ms_flags &= ~MSGF_DONE;
	int error = lwkt_beginmsg(&port, &msg);
	lwkt_msg_t got = static_cast<lwkt_msg_t>(lwkt_getport(&port));
	printf("beginmsg %s, got it back: %d\n", error == EASYNC ? "EASYNC" : "?",
	    got == &msg);
	lwkt_replymsg(got, 5);
	printf("waitmsg: %d\n", lwkt_waitmsg(&msg));
	msg.ms_flags &= ~MSGF_DONE;
	error = lwkt_forwardmsg(&port, &msg);
	got = static_cast<lwkt_msg_t>(lwkt_getport(&port));
	lwkt_abortmsg(&msg);
	lwkt_replymsg(got, 6);
	printf("forwarded %s, replies %d, error %d\n", error == EASYNC ? "EASYNC" : "?",
	    replies, msg.ms_error);

	/* slaballoc.h */
	char *p = static_cast<char *>(slab_malloc(100, M_CXX, M_ZERO));
	strcpy(p, "x");
	slab_free(p, M_CXX);
	printf("slab '%s' calls %lld\n", M_CXX->ks_shortdesc,
	    static_cast<long long>(M_CXX->ks_calls));

	/* caps_struct.h */
	unsigned char buf[64];
	struct caps_msgbuf mb;
	caps_init_msgbuf(&mb, buf, sizeof(buf));
	caps_msgbuf_putc(&mb, 'S');
	caps_msgbuf_printf(&mb, "%s{}", "pair");
	mb.index = 0;
	printf("msgbuf: %c", caps_msgbuf_getc(&mb));
	printf("%.*s\n", 6, reinterpret_cast<char *>(buf) + 1);
	struct pair in = { 42, const_cast<char *>("hi") };
	struct pair out = { 0, NULL };
	char enc[64];
	int n = caps_encode(enc, sizeof(enc), &in, &pair_struct);
	int derr = -1;
	caps_decode(enc, n, &out, &pair_struct, &derr);
	printf("%.*s -> %d \"%s\" error %d\n", n, enc, out.a, out.s, derr);
	caps_struct_free_pointers(&out, &pair_struct);
	return (0);
}
