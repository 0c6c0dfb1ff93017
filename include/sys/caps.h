/*
 * <sys/caps.h> -- CAPS IPC (libcaps for Linux).
 *
 * The November 2003 userland API: caps_service(), caps_client(),
 * caps_client_waitreply(), caps_close() over Unix-domain sockets; and the
 * 2004 kernel API (sys/caps.h 1.6): caps_sys_service(), caps_sys_client(),
 * caps_sys_put(), ... done in userland over the same sockets. struct
 * caps_cred has the 2004 layout (with cacheid) so one header serves both;
 * struct caps_port is the v1 one (see docs/compat.md). Structures and
 * prototypes come from the cbindgen-generated <libcaps/gen/caps.h>.
 */
#ifndef _SYS_CAPS_H_
#define _SYS_CAPS_H_

#include <sys/types.h>
#include <sys/msgport.h>

/* caps_service() flags */
#define CAPS_USER	0x00000001	/* the service owner's uid may connect */
#define CAPS_GROUP	0x00000002	/* members of the service's group may */
#define CAPS_WORLD	0x00000004	/* anybody may */
#define CAPS_EXCL	0x00000008	/* fail if a live service has the name */
#define CAPS_ANYCLIENT	(CAPS_USER|CAPS_GROUP|CAPS_WORLD)
#define CAPS_WCRED	0x00000010	/* waiting for cred */

typedef enum caps_type {
	CAPT_UNKNOWN, CAPT_CLIENT, CAPT_SERVICE, CAPT_REMOTE, CAPT_FORKED
} caps_type_t;

#define CAPS_MAXGROUPS	16

/* CAPS v2 (caps_sys_*) */
typedef enum caps_msg_state {
	CAPMS_REQUEST,
	CAPMS_REQUEST_RETRY,	/* internal / FUTURE */
	CAPMS_REPLY,
	CAPMS_REPLY_RETRY,	/* internal / FUTURE */
	CAPMS_DISPOSE
} caps_msg_state_t;

/* Note: upper 16 bits reserved for kernel use */
#define CAPF_UFLAGS	0xFFFF
#define CAPF_USER	0x0001
#define CAPF_GROUP	0x0002
#define CAPF_WORLD	0x0004
#define CAPF_EXCL	0x0008
#define CAPF_ANYCLIENT	(CAPF_USER|CAPF_GROUP|CAPF_WORLD)
#define CAPF_WCRED	0x0010	/* waiting for cred */
#define CAPF_NOFORK	0x0020	/* do not create a dummy entry on fork */
#define CAPF_WAITSVC	0x0040	/* block if service not available */

#define CAPS_ABORT_NOTIMPL	0	/* abort not implemented, no action */
#define CAPS_ABORT_RETURNED	1	/* already returned, no action */
#define CAPS_ABORT_BEFORESERVER	2	/* caught before the server got it */
#define CAPS_ABORT_ATSERVER	3	/* server had retrieved message */

#define CAPF_ABORT_HARD		0x0001	/* rip out from under server (3) */

#define CAPS_MAXNAMELEN	64
#define CAPS_MAXINPROG	128

struct caps_port;
#include <libcaps/gen/caps.h>

typedef struct caps_cred *caps_cred_t;

/* caps_port flags */
#define CAPPF_WAITCRED		0x0001
#define CAPPF_ONLIST		0x0002
#define CAPPF_WREQUESTED	0x0004	/* write event requested */
#define CAPPF_SHUTDOWN		0x0008	/* terminated/failed */

#define CAPMSG_MAXSIZE		(1024+64*1024)

#endif /* !_SYS_CAPS_H_ */
