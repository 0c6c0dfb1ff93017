/*
 * <sys/caps.h> -- CAPS IPC (libcaps for Linux).
 *
 * The November 2003 userland API: caps_service(), caps_client(),
 * caps_client_waitreply(), caps_close() over Unix-domain sockets. struct
 * caps_cred has the 2004 layout (with cacheid) so the same header can
 * serve the caps_sys_* calls. Structures and prototypes come from the
 * cbindgen-generated <libcaps/gen/caps.h>.
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
	CAPT_UNKNOWN, CAPT_CLIENT, CAPT_SERVICE, CAPT_REMOTE
} caps_type_t;

#define CAPS_MAXGROUPS	16

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
