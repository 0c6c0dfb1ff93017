/*
 * msgport_symbols -- the msgport2.h helpers are also library functions:
 * a program that includes only <sys/msgport.h> and declares them itself
 * links and gets the same behaviour as the inline versions.
 */
#include <sys/types.h>
#include <sys/msgport.h>

#include <stdio.h>

void lwkt_initmsg(lwkt_msg_t msg, lwkt_port_t rport, int cmd);
void lwkt_reinitmsg(lwkt_msg_t msg, lwkt_port_t rport);
int lwkt_beginmsg(lwkt_port_t port, lwkt_msg_t msg);
int lwkt_forwardmsg(lwkt_port_t port, lwkt_msg_t msg);
int lwkt_waitmsg(lwkt_msg_t msg);
void lwkt_abortmsg(lwkt_msg_t msg);
void lwkt_replymsg(lwkt_msg_t msg, int error);

int
main(void)
{
	struct lwkt_port a, b, r;
	struct lwkt_msg m;
	int ok = 1;

	lwkt_initport(&a, NULL);
	lwkt_initport(&b, NULL);
	lwkt_initport(&r, NULL);
	lwkt_initmsg(&m, &r, 7);
	ok &= m.ms_flags == MSGF_DONE && m.ms_cmd == 7 && m.ms_reply_port == &r;
	ok &= lwkt_beginmsg(&a, &m) == EASYNC && m.ms_target_port == &a;
	ok &= lwkt_getport(&a) == &m;
	ok &= lwkt_forwardmsg(&b, &m) == EASYNC && m.ms_target_port == &b;
	lwkt_abortmsg(&m);
	ok &= lwkt_getport(&b) == &m;
	lwkt_replymsg(&m, 33);
	ok &= lwkt_waitmsg(&m) == 33;
	m.ms_flags |= MSGF_ASYNC;
	lwkt_reinitmsg(&m, &a);
	ok &= m.ms_flags == (MSGF_ASYNC | MSGF_DONE) && m.ms_reply_port == &a;
	printf("library helpers: %s\n", ok ? "ok" : "FAILED");
	return (!ok);
}
