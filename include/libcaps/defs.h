/*
 * <libcaps/defs.h> -- the umbrella header of libcaps (libcaps for Linux).
 *
 * As DragonFly BSD's libcaps defs.h, it pulls in everything a libcaps
 * program uses: the system headers below, the thread, globaldata,
 * message-port, critical-section, CAPS and caps_struct headers and the
 * slab allocator's declarations; it defines DBPRINTF() and declares
 * main_td. DragonFly's thr1.c, thr2.c and thr3.c include nothing else but
 * <stdio.h>.
 *
 * Left out, having no Linux meaning: <sys/upcall.h> (no upcalls),
 * <sys/event.h> (kqueue), <machine/cpufunc.h>, libcaps' sysport.h (the
 * experimental sendsys() port). <sys/malloc.h>'s part is in
 * <libcaps/slaballoc.h>. See docs/compat.md, "Headers".
 */
#ifndef _LIBCAPS_DEFS_H_
#define _LIBCAPS_DEFS_H_

#include <sys/types.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <stdint.h>
#include <libcaps/slaballoc.h>
#include <libcaps/thread.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <errno.h>
#include <libcaps/globaldata.h>
#include <sys/thread2.h>
#include <sys/msgport2.h>
#include <sys/caps.h>

#include <sys/time.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>
#include <signal.h>
#include <assert.h>

#include <libcaps/caps_struct.h>

/* DBPRINTF((fmt, ...)): printf when built with -DCAPS_DEBUG, else nothing. */
#ifdef CAPS_DEBUG
#define DBPRINTF(x)	printf x
#else
#define DBPRINTF(x)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The thread of main(): curthread == &main_td in main. */
extern struct thread main_td;

#ifdef __cplusplus
}
#endif

#endif /* !_LIBCAPS_DEFS_H_ */
