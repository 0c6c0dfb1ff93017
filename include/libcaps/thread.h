/*
 * <libcaps/thread.h> -- libcaps' own thread header. In DragonFly it
 * supplied struct md_thread before including <sys/thread.h>; here
 * <sys/thread.h> is complete by itself, so this only includes it together
 * with the inline helpers.
 */
#ifndef _LIBCAPS_THREAD_H_
#define _LIBCAPS_THREAD_H_

#include <sys/thread.h>
#include <sys/thread2.h>

#endif /* !_LIBCAPS_THREAD_H_ */
