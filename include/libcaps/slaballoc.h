/*
 * <libcaps/slaballoc.h> -- the libcaps slab allocator (libcaps for Linux).
 *
 * Source-compatible with DragonFly BSD's libcaps slaballoc.h (1.1/1.3) and
 * the 2003-2004 kernel <sys/malloc.h> parts it relies on: struct
 * malloc_type, M_MAGIC, the M_* flags and MALLOC_DEFINE. The structures
 * and prototypes come from the cbindgen-generated <libcaps/gen/slaballoc.h>;
 * this file adds the constants, the DragonFly typedefs and the macros.
 *
 * The M_* values are not those of any recovered DragonFly header: see
 * docs/compat.md, "Slab allocator".
 */
#ifndef _LIBCAPS_SLABALLOC_H_
#define _LIBCAPS_SLABALLOC_H_

#include <sys/types.h>
#include <stdint.h>

#ifndef SMP_MAXCPU
#define SMP_MAXCPU		16
#endif
#ifndef PAGE_SIZE
#define PAGE_SIZE		4096
#endif

/* <sys/malloc.h> */
#define M_MAGIC			877983977	/* ks_magic of a valid type */

#define M_NOWAIT		0x0001	/* NULL rather than abort at the limit */
#define M_WAITOK		0x0002	/* may wait (default; ignored) */
#define M_ZERO			0x0100	/* zero the allocation */
#define M_USE_RESERVE		0x0200	/* ignored */
#define M_NULLOK		0x0400	/* NULL rather than abort at the limit */
#define M_PASSIVE_ZERO		0x0800	/* treated like M_ZERO */

/* slaballoc.h */
#define ZALLOC_ZONE_LIMIT	(16 * 1024)	/* max slab-managed alloc */
#define ZALLOC_MIN_ZONE_SIZE	(32 * 1024)	/* minimum zone size */
#define ZALLOC_MAX_ZONE_SIZE	(128 * 1024)	/* maximum zone size */
#define ZALLOC_SLAB_MAGIC	0x736c6162	/* magic sanity ("slab") */
#define ZALLOC_OVSZ_MAGIC	0x736c6163	/* magic sanity ("slac") */
#define ZALLOC_SLAB_SLIDE	20
#define NZONES			72	/* for ZALLOC_ZONE_LIMIT 16384 */
#define SLZONE_NPAGES		(ZALLOC_MAX_ZONE_SIZE / PAGE_SIZE)

#define SLZF_UNOTZEROD		0x0001

struct globaldata;
#include <libcaps/gen/slaballoc.h>

typedef struct SLChunk		SLChunk;
typedef struct SLZone		SLZone;
typedef struct SLGlobalData	SLGlobalData;
typedef struct SLOversized	SLOversized;

/*
 * Declare a malloc type: MALLOC_DEFINE(M_FOO, "foo", "foo buffers") at file
 * scope defines M_FOO (a struct malloc_type[1], so M_FOO is usable as the
 * type argument); MALLOC_DECLARE(M_FOO) declares it in a header. The type
 * is registered on its first slab_malloc(). The cache-line alignment keeps
 * the per-cpu counters of different types apart.
 *
 * Every field is given, in order, so the same initializer is valid C and
 * C++ from C++11 on (designated initializers are C++20) without
 * -Wmissing-field-initializers warnings.
 */
#define MALLOC_DEFINE(type, shortdesc, longdesc)			\
	struct malloc_type type[1] __attribute__((aligned(64))) = { {	\
		/* ks_next */ 0, /* ks_memuse */ { 0 },			\
		/* ks_loosememuse, ks_limit, ks_size */ 0, 0, 0,		\
		/* ks_inuse */ { 0 }, /* ks_calls, ks_maxused */ 0, 0,	\
		/* ks_magic */ M_MAGIC, /* ks_shortdesc */ (shortdesc),	\
		/* ks_limblocks, ks_mapblocks */ 0, 0,			\
		/* ks_reserved */ { 0 }					\
	} }

#define MALLOC_DECLARE(type)						\
	extern struct malloc_type type[1]

#endif /* !_LIBCAPS_SLABALLOC_H_ */
