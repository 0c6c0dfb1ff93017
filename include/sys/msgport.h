/*
 * <sys/msgport.h> -- LWKT message ports (libcaps for Linux).
 *
 * Source-compatible with DragonFly BSD's November 2003 ("Generation A")
 * header used by libcaps: struct lwkt_msg with ms_maxsize, struct lwkt_port
 * with its four vectors. The structures and prototypes come from the
 * cbindgen-generated <libcaps/gen/msgport.h>; this file adds the typedefs,
 * the flag tables and EASYNC.
 */
#ifndef _SYS_MSGPORT_H_
#define _SYS_MSGPORT_H_

#include <sys/types.h>
#include <sys/queue.h>		/* TAILQ_* work on mp_msgq / ms_node */
#include <stddef.h>

struct thread;
#include <libcaps/gen/msgport.h>

typedef struct lwkt_msg		lwkt_msg;
typedef struct lwkt_port	lwkt_port;
typedef struct lwkt_msg_queue	lwkt_msg_queue;

/* ms_flags */
#define MSGF_DONE	0x0001		/* message is complete */
#define MSGF_REPLY	0x0002		/* message has been returned */
#define MSGF_QUEUED	0x0004		/* message has been queued sanitychk */
#define MSGF_ASYNC	0x0008		/* sync/async hint */
#define MSGF_ABORTED	0x0010		/* abort requested or occurred */

/* mp_flags */
#define MSGPORTF_WAITING	0x0001	/* owner is blocked on this port */

/* ms_cmd classes */
#define MSG_CMD_CDEV	0x00010000
#define MSG_CMD_VFS	0x00020000
#define MSG_CMD_SYSCALL	0x00030000
#define MSG_CMD_NETMSG	0x00040000
#define MSG_SUBCMD_MASK	0x0000FFFF

/*
 * "Operation will complete asynchronously". DragonFly's value (99) is
 * EADDRNOTAVAIL on Linux, so libcaps uses a value no Linux errno uses.
 */
#ifndef EASYNC
#define EASYNC		1099
#endif

#endif /* !_SYS_MSGPORT_H_ */
