/*
 * <libcaps/caps_struct.h> -- structural encoding of C structures
 * (libcaps for Linux).
 *
 * Source-compatible with DragonFly BSD's libcaps/caps_struct.h (2004). A
 * structure is described by a table of struct caps_label (one per field:
 * offset, type, size, wire id) and a struct caps_struct (wire name +
 * table); caps_encode() turns such a structure into a short ASCII string
 * that identifies fields by id, caps_decode() fills a structure from one.
 *
 * Differences from the original (see docs/compat.md, "Encoding"): this
 * header has an include guard; caps_passwd_struct describes glibc's
 * struct passwd (no pw_change/pw_class/pw_expire); negative integers and
 * arrays round-trip; caps_decode() reports ENOENT and invalid data.
 *
 * The structures and prototypes come from the cbindgen-generated
 * <libcaps/gen/caps_struct.h>; this file adds the typedefs, the type
 * codes, the CAPS_IN_* initialiser macros and the inline helpers.
 */
#ifndef _LIBCAPS_CAPS_STRUCT_H_
#define _LIBCAPS_CAPS_STRUCT_H_

#include <sys/types.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>

struct caps_label;
struct caps_struct;
struct caps_msgbuf;

typedef const struct caps_label *caps_label_t;
typedef const struct caps_struct *caps_struct_t;
typedef struct caps_msgbuf *caps_msgbuf_t;

#include <libcaps/gen/caps_struct.h>

#define CAPS_OPF_PTR		0x0100

#define CAPS_OP_INT_T		1
#define CAPS_OP_UINT_T		2
#define CAPS_OP_STRBUF_T	3
#define CAPS_OP_STRPTR_T	(3|CAPS_OPF_PTR)
#define CAPS_OP_OPAQUE_T	4

/*
 * Initialisers for the (type, size) pair of a struct caps_label:
 *	{ offsetof(struct passwd, pw_name), CAPS_IN_STRPTR_T, 1 }
 * The signedness reflects the casting policy, not the C type (all
 * CAPS_IN_UINT*_T use CAPS_OP_INT_T, as in the original).
 */
#define CAPS_IN_INT_T		CAPS_OP_INT_T, sizeof(int)
#define CAPS_IN_INT8_T		CAPS_OP_INT_T, sizeof(int8_t)
#define CAPS_IN_INT16_T		CAPS_OP_INT_T, sizeof(int16_t)
#define CAPS_IN_INT32_T		CAPS_OP_INT_T, sizeof(int32_t)
#define CAPS_IN_LONG_T		CAPS_OP_INT_T, sizeof(long)
#define CAPS_IN_INT64_T		CAPS_OP_INT_T, sizeof(int64_t)
#define CAPS_IN_UINT_T		CAPS_OP_INT_T, sizeof(unsigned int)
#define CAPS_IN_UINT8_T		CAPS_OP_INT_T, sizeof(uint8_t)
#define CAPS_IN_UINT16_T	CAPS_OP_INT_T, sizeof(uint16_t)
#define CAPS_IN_UINT32_T	CAPS_OP_INT_T, sizeof(uint32_t)
#define CAPS_IN_ULONG_T		CAPS_OP_INT_T, sizeof(unsigned long)
#define CAPS_IN_UINT64_T	CAPS_OP_INT_T, sizeof(uint64_t)
#define CAPS_IN_STRPTR_T	CAPS_OP_STRPTR_T, 0
#define CAPS_IN_STRBUF_T(n)	CAPS_OP_STRBUF_T, (n)
#define CAPS_IN_UID_T		CAPS_OP_INT_T, sizeof(uid_t)
#define CAPS_IN_GID_T		CAPS_OP_INT_T, sizeof(gid_t)
#define CAPS_IN_TIME_T		CAPS_OP_UINT_T, sizeof(time_t)
#define CAPS_IN_OFF_T		CAPS_OP_INT_T, sizeof(off_t)
#define CAPS_IN_SIZE_T		CAPS_OP_UINT_T, sizeof(size_t)
#define CAPS_IN_SSIZE_T		CAPS_OP_INT_T, sizeof(ssize_t)

/* struct passwd (glibc layout); the table ends with { -1 }. */
extern const struct caps_struct caps_passwd_struct;
extern const struct caps_label caps_passwd_label[];

/* The byte at the index (0 past the end); the index always advances. */
static __inline uint8_t
caps_msgbuf_getc(caps_msgbuf_t msg)
{
	uint8_t c = 0;

	if (msg->index >= 0 && msg->index < msg->bufsize)
		c = msg->base[msg->index];
	++msg->index;
	return (c);
}

/* Store c if the index is inside the buffer; the index always advances. */
static __inline void
caps_msgbuf_putc(caps_msgbuf_t msg, uint8_t c)
{
	if (msg->index >= 0 && msg->index < msg->bufsize)
		msg->base[msg->index] = c;
	++msg->index;
}

/*
 * printf into the buffer at the index; the index advances by the full
 * formatted length even when the output is truncated. vsnprintf stores a
 * NUL after the text when there is room (not counted). A header inline:
 * stable Rust cannot define C variadic functions.
 */
static __inline void
caps_msgbuf_printf(caps_msgbuf_t msg, const char *ctl, ...)
{
	va_list va;
	int room = 0;
	int n;

	if (msg->base != NULL && msg->index >= 0 && msg->index < msg->bufsize)
		room = msg->bufsize - msg->index;
	va_start(va, ctl);
	n = vsnprintf(room ? (char *)msg->base + msg->index : NULL,
	    (size_t)room, ctl, va);
	va_end(va);
	if (n > 0)
		msg->index += n;
}

#endif /* !_LIBCAPS_CAPS_STRUCT_H_ */
