/*
 * <sys/msgport2.h> -- inline helpers for LWKT message ports (libcaps for
 * Linux). The same functions are exported by libcaps as ordinary symbols
 * for code that does not include this header.
 */
#ifndef _SYS_MSGPORT2_H_
#define _SYS_MSGPORT2_H_

#include <sys/msgport.h>

/* A fresh, completed message whose replies go to rport. */
static __inline void
lwkt_initmsg(lwkt_msg_t msg, lwkt_port_t rport, int cmd)
{
	msg->ms_cmd = cmd;
	msg->ms_flags = MSGF_DONE;
	msg->ms_reply_port = rport;
	msg->ms_msgsize = 0;
	msg->ms_maxsize = 0;
}

/* Re-arm a message: keep the async hint, mark it done, new reply port. */
static __inline void
lwkt_reinitmsg(lwkt_msg_t msg, lwkt_port_t rport)
{
	msg->ms_flags = (msg->ms_flags & MSGF_ASYNC) | MSGF_DONE;
	msg->ms_reply_port = rport;
}

/* Hand msg to port; EASYNC if queued, else the synchronous result. */
static __inline int
lwkt_beginmsg(lwkt_port_t port, lwkt_msg_t msg)
{
	msg->ms_target_port = port;
	return (port->mp_putport(port, msg));
}

/* Pass a received message on to another port. */
static __inline int
lwkt_forwardmsg(lwkt_port_t port, lwkt_msg_t msg)
{
	msg->ms_target_port = port;
	return (port->mp_putport(port, msg));
}

/* Wait for msg to complete on its reply port; its error. */
static __inline int
lwkt_waitmsg(lwkt_msg_t msg)
{
	lwkt_port_t port = msg->ms_reply_port;
	lwkt_msg_t done = (lwkt_msg_t)port->mp_waitport(port, msg);

	return (done != NULL ? done->ms_error : msg->ms_error);
}

/* Ask the message's target to abort it. */
static __inline void
lwkt_abortmsg(lwkt_msg_t msg)
{
	lwkt_port_t port = msg->ms_target_port;

	port->mp_abortport(port, msg);
}

/* Complete msg with error and return it to its reply port. */
static __inline void
lwkt_replymsg(lwkt_msg_t msg, int error)
{
	lwkt_port_t port = msg->ms_reply_port;

	msg->ms_error = error;
	port->mp_replyport(port, msg);
}

#endif /* !_SYS_MSGPORT2_H_ */
